/**
 * The admin API's router methods (the setup's "Router" step): the last port
 * mapping result, and mapping the ports now (port-mapping.ts).
 */
import type { ApiMethods } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";
import { FORWARDED_PORTS } from "./port-mapping.ts";

export function routerApi(c: WebContext): ApiMethods {
  return {
    routerPorts: {
      handler: () => ({
        available: c.portMapper !== null,
        report: c.portMapper?.last ?? null,
        ports: FORWARDED_PORTS.map((p) => ({ port: p.port, purpose: p.purpose })),
      }),
    },
    mapRouterPorts: {
      handler: async () => {
        if (!c.portMapper) throw new ApiError("user:error", "automatic port mapping is not available here (local mode): forward the ports by hand");
        return { available: true, report: await c.portMapper.run() };
      },
    },
  };
}
