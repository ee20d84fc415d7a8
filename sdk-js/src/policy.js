// Exporting a policy as the component's `handler`.

import { Request } from './request.js';
import { Decision } from './decision.js';

/**
 * The `handler` export for a policy: `{ init?(config), route(req), onFailure?(req, failure) }`
 * where `req` is a `Request`. `init` may return an error message (or throw) to refuse
 * the configuration; `onFailure` defaults to the standard algorithm.
 *
 *     export const handler = exportPolicy({ route(req) { return Decision.standard(); } });
 */
export function exportPolicy(policy) {
  if (typeof policy?.route !== 'function') {
    throw new TypeError('exportPolicy: the policy has no route(req) function');
  }
  return {
    init(config) {
      let error;
      try {
        error = policy.init?.(config);
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
      }
      if (typeof error === 'string') {
        throw error;
      }
    },
    route(wire) {
      return policy.route(new Request(wire));
    },
    onFailure(wire, failure) {
      return policy.onFailure ? policy.onFailure(new Request(wire), failure) : Decision.standard();
    },
  };
}
