// {name}: an exum-router routing policy.
//
// It starts as the router's standard Exchange UM algorithm with one
// adjustment: calls from the callers listed in `policy_config` (SIP
// addresses, comma-separated) carry an `X-Priority-Caller: yes` header to the
// UM server. Change `route` to route your way: `standard.route(req)` gives the
// standard decision to start from, `routing` its building blocks, `host` the
// tenant's directory.

import { Decision, exportPolicy, parseUri, standard } from '@exum-router/policy-sdk';
import type { Failure, Policy, Request } from '@exum-router/policy-sdk';

/** The callers from `policy_config`, set by `init`. */
let callers: string[] = [];

/** The policy: the functions the router calls, on a `Request`. */
export const policy = {
  /** Called once per instance with the tenant's `policy_config`; a string returned refuses it. */
  init(config: string): string | undefined {
    const parsed: string[] = [];
    for (const entry of config.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
      const uri = parseUri(entry);
      if (uri === undefined) {
        return `\`${entry}\` is not a SIP address`;
      }
      parsed.push(uri.address());
    }
    callers = parsed;
    return undefined;
  },

  /** Where a new request goes. */
  route(req: Request): Decision {
    const decision = standard.route(req);
    if (callers.includes(req.from.address())) {
      return Decision.mapForward(decision, (f) => f.addHeader('X-Priority-Caller', 'yes'));
    }
    return decision;
  },

  /** Every target of a forward failed: what happens next. */
  onFailure(req: Request, failure: Failure): Decision {
    return standard.onFailure(req, failure);
  },
} satisfies Policy;

// The component's export: what `exum-router build` turns into a component.
export const handler = exportPolicy(policy);
