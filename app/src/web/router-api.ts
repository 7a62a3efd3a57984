/**
 * The admin API's router methods (the setup's "Router" step): the ports to
 * forward for the configured ACME challenge (port 80 required only with
 * http-01), the last port mapping result with its renewal state, and mapping
 * the ports now (port-mapping.ts).
 */
import type { ApiMethods } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";
import { configuredChallenge, forwardedPorts } from "./port-mapping.ts";

export function routerApi(c: WebContext): ApiMethods {
  return {
    routerPorts: {
      handler: () => {
        const challenge = configuredChallenge(c.config);
        return {
          available: c.portMapper !== null,
          report: c.portMapper?.last ?? null,
          challenge,
          ports: forwardedPorts(challenge).map((p) => ({ port: p.port, purpose: p.purpose, required: p.required })),
        };
      },
    },
    mapRouterPorts: {
      handler: async () => {
        if (!c.portMapper) throw new ApiError("user:error", "automatic port mapping is not available here (local mode): forward the ports by hand");
        return { available: true, report: await c.portMapper.run() };
      },
    },
  };
}
