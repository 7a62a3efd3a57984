/**
 * The admin API's update methods (admin → System → "Install an update"):
 * ask the device to download and install a signed update bundle from a URL,
 * and show how far it got.
 *
 * 1. `updateInstall` {url, reboot} checks the URL (system/update-request.ts
 *    parseUpdateUrl: http or https, no credentials), refuses while an apply
 *    runs or a request waits, and writes <data_dir>/update/request.json
 *    atomically and durably; the 2xx answer means the request is on stable
 *    storage (design.md, durability rule).
 * 2. On the device, letterbox-update.path sees the file and starts
 *    letterbox-update.service (root), which takes the request and runs the
 *    same apply as `letterbox update apply URL` (all checks before writing,
 *    resuming download), then reboots into the trial boot when asked.
 * 3. `updateInfo` reads what the root side reports in the update state
 *    folder (/data/update: progress.json while it runs, request-result.json,
 *    state.json) for the panel, which asks again every few seconds while an
 *    update is waiting or running.
 * 4. In local mode (localserve) there is no root side: installing is refused.
 * Every method needs an admin session and its CSRF header (api.ts).
 */
import { DEFAULT_STATE_DIR } from "../system/index.ts";
import { nodeSystemIo } from "../system/io.ts";
import { newUpdateRequest, readUpdateView, updateBusy, UpdateRequestError, writeUpdateRequest, type UpdateView } from "../system/update-request.ts";
import type { ApiMethods } from "./api.ts";
import { bool, str } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";

export interface UpdatePanelView extends UpdateView {
  /** False in local mode: there is nothing to install into. */
  device: boolean;
}

export interface UpdateApiOptions {
  /** The root side's update state folder (default /data/update). */
  stateDir?: string;
}

export function updateApi(c: WebContext, opts: UpdateApiOptions = {}): ApiMethods {
  const stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
  const view = async (): Promise<UpdatePanelView> => ({ device: !c.config.localserve, ...(await readUpdateView(nodeSystemIo, c.config.dataDir, stateDir)) });
  // One install at a time within this process (the file check below covers the rest).
  let installing = false;
  return {
    updateInfo: { handler: view },
    updateInstall: {
      handler: async ({ ctx, params }) => {
        if (c.config.localserve) throw new ApiError("user:error", "updates are installed on the device only (this is local mode)");
        const raw = str(params, "url", { max: 4096 });
        const reboot = bool(params, "reboot", true);
        if (installing) throw new ApiError("user:error", "an update request is being saved");
        installing = true;
        try {
          let req;
          try {
            req = newUpdateRequest(raw, reboot, `admin from ${ctx.ip}`);
          } catch (e) {
            if (e instanceof UpdateRequestError) throw new ApiError("user:error", e.message);
            throw e;
          }
          const busy = updateBusy(await readUpdateView(nodeSystemIo, c.config.dataDir, stateDir));
          if (busy) throw new ApiError("user:error", busy);
          await writeUpdateRequest(c.config.dataDir, req);
          ctx.log.info("update requested", { url: req.url, reboot: req.reboot, id: req.id });
          return view();
        } finally {
          installing = false;
        }
      },
    },
  };
}
