// Example policy (TypeScript): the standard decision, adjusted. Calls from VIP
// callers try a dedicated UM server first and then the standard targets, with
// a header telling the UM server why; every other call is left exactly as the
// standard algorithm decides. The same policy as the Rust and Python ones
// beside it, decision for decision.
//
// `policy_config`: `server=<SIP URI>; callers=<SIP address>, <SIP address>, ...`
// (`server=sip:vip-um.contoso.com;transport=tls; callers=sip:ceo@contoso.com`).
// The server's URI may hold `;` parameters: everything after `server=` up to
// `; callers=` is the URI.

import { Decision, Target, exportPolicy, parseUri, standard } from '@exum-router/policy-sdk';
import type { Failure, Policy, Request } from '@exum-router/policy-sdk';

/** The VIP server and callers' addresses. */
export interface Config {
  server: string;
  callers: string[];
}

let config: Config | undefined;

/** Parses `server=...; callers=...`: the configuration, or why it is refused. */
export function parse(text: string): Config | string {
  const at = text.indexOf('callers=');
  if (at < 0) {
    return 'policy_config needs `server=<SIP URI>; callers=<addresses>`';
  }
  const head = text.slice(0, at).trim();
  if (!head.startsWith('server=')) {
    return 'policy_config must start with `server=`';
  }
  const server = head.slice('server='.length).trim().replace(/;+$/, '').trim();
  const uri = parseUri(server);
  if (uri === undefined || (uri.scheme !== 'sip' && uri.scheme !== 'sips')) {
    return `server: \`${server}\` is not a SIP URI`;
  }
  const callers: string[] = [];
  for (const entry of text.slice(at + 'callers='.length).split(',').map((c) => c.trim())) {
    if (entry === '') {
      continue;
    }
    const caller = parseUri(entry);
    if (caller === undefined) {
      return `callers: \`${entry}\` is not a SIP address`;
    }
    callers.push(caller.address());
  }
  if (callers.length === 0) {
    return 'callers: list at least one SIP address';
  }
  return { server, callers };
}

export const policy = {
  init(text: string): string | undefined {
    const parsed = parse(text);
    if (typeof parsed === 'string') {
      return parsed;
    }
    config = parsed;
    return undefined;
  },

  route(req: Request): Decision {
    const decision = standard.route(req);
    if (config !== undefined && config.callers.includes(req.from.address())) {
      const server = config.server;
      return Decision.mapForward(decision, (f) => f.first(new Target(server)).addHeader('X-Exum-Vip', 'yes'));
    }
    return decision;
  },

  onFailure(req: Request, failure: Failure): Decision {
    return standard.onFailure(req, failure);
  },
} satisfies Policy;

export const handler = exportPolicy(policy);
