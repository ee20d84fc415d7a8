// The in-memory stand-in for the router, for unit tests of a policy under Node.
//
// Run tests with the SDK's loader, which answers the contract's imports
// (`exum:policy/...`) from the installed `TestHost`:
//
//     node --import @exum-router/policy-sdk/register --test
//
// Each test builds a directory, installs it, and calls the policy's functions
// with requests from `invite(...)`.

import { Request } from './request.js';
import { normalizeNumber, parseUri } from './uri.js';
import * as reference from './reference.js';

let installed;

/** The installed host; throws if a test forgot `install()`. */
export function current() {
  if (installed === undefined) {
    throw new Error('no TestHost installed: call new TestHost(...).install() first');
  }
  return installed;
}

/** A user record with only the SIP address set. */
export function user(sip) {
  return {
    sipAddress: sip,
    lineUri: undefined,
    number: undefined,
    site: undefined,
    voicemail: 'none',
    hostedVoicemailPolicy: undefined,
    eumAddress: undefined,
  };
}

const rerouteOff = () => ({
  enabled: false,
  autoAttendant: undefined,
  subscriberAccess: undefined,
  pstnGateway: undefined,
});

/** A directory for one tenant, answering every import as the router would. */
export class TestHost {
  /** An empty directory for tenant `id` owning the domain `<id>.com`, at Monday 2026-01-05 10:00 UTC. */
  constructor(id) {
    this.tenant = { id, domains: [`${id}.com`], edge: undefined, defaultNextHop: undefined };
    this.users = [];
    this.contacts = [];
    this.contactDialPlans = [];
    this.hostedPolicies = [];
    this.dialPlans = [];
    this.reroute = rerouteOff();
    this.siteReroute = [];
    this.downTargets = [];
    this.now = { unixSeconds: 1767607200, utcOffsetMinutes: 0 };
    this.logs = [];
  }

  /** The tenant's edge next hop (towards its hosting provider). */
  edge(uri) {
    this.tenant.edge = uri;
    return this;
  }

  /** Where requests that are not voice-mail-bound go. */
  defaultNextHop(uri) {
    this.tenant.defaultNextHop = uri;
    return this;
  }

  /** The tenant's domains. */
  domains(domains) {
    this.tenant.domains = [...domains];
    return this;
  }

  /** A user with hosted voice mail, granted a per-user policy and in a site if given. */
  hostedUser(sip, granted, site) {
    this.users.push({ ...user(sip), voicemail: 'hosted', hostedVoicemailPolicy: granted, site });
    return this;
  }

  /** A user on an on-premises dial plan (`eum:...;phone-context=...`). */
  onPremisesUser(sip, eum) {
    this.users.push({ ...user(sip), voicemail: 'on-premises', eumAddress: eum });
    return this;
  }

  /** Any user record (`{...user(sip), number: '+1...'}`). */
  user(record) {
    this.users.push({ ...user(record.sipAddress), ...record });
    return this;
  }

  /** An Exchange UM contact (`kind`: `subscriber-access` or `auto-attendant`), granted a hosted policy if given. */
  contact(sip, number, kind, granted) {
    this.contacts.push({ sipAddress: sip, number, kind, site: undefined, hostedVoicemailPolicy: granted });
    return this;
  }

  /** A contact of an on-premises dial plan (by name or phone-context). */
  onPremisesContact(sip, number, kind, plan) {
    this.contact(sip, number, kind, undefined);
    this.contactDialPlans.push([sip, plan]);
    return this;
  }

  /** A hosted voice-mail policy: scope `{tag: 'global'}`, `{tag: 'site', val}` or `{tag: 'named', val}`. */
  hostedPolicy(scope, destination, organizations = []) {
    const name = scope.tag === 'global' ? 'global' : scope.tag === 'site' ? `site:${scope.val}` : scope.val;
    this.hostedPolicies.push([scope, { name, destination, organizations: [...organizations] }]);
    return this;
  }

  /** An on-premises dial plan; `servers` as `[uri, timeoutMs]` pairs. */
  dialPlan(name, phoneContext, servers) {
    this.dialPlans.push({ name, phoneContext, servers: servers.map(([uri, timeoutMs]) => ({ uri, timeoutMs })) });
    return this;
  }

  /** The tenant's voice-mail rerouting over the PSTN. */
  rerouting(gateway, autoAttendant, subscriberAccess) {
    this.reroute = { enabled: true, autoAttendant, subscriberAccess, pstnGateway: gateway };
    return this;
  }

  /** A site's voice-mail rerouting. */
  siteRerouting(site, gateway, autoAttendant, subscriberAccess) {
    this.siteReroute = this.siteReroute.filter(([s]) => s !== site);
    this.siteReroute.push([site, { enabled: true, autoAttendant, subscriberAccess, pstnGateway: gateway }]);
    return this;
  }

  /** Puts a contact added before in a site. */
  contactSite(sip, site) {
    const c = this.contacts.find((c) => c.sipAddress === sip);
    if (c === undefined) {
      throw new Error(`no contact ${sip} added before contactSite`);
    }
    c.site = site;
    return this;
  }

  /** Marks a target down, as health probes would. */
  down(uri) {
    this.downTargets.push(uri);
    return this;
  }

  /** What `host.now()` answers. */
  at(unixSeconds, utcOffsetMinutes = 0) {
    this.now = { unixSeconds, utcOffsetMinutes };
    return this;
  }

  /** Makes this the directory the imports answer from. */
  install() {
    installed = this;
    return this;
  }

  /** What the policy logged since `install()`, as `[level, message]`. */
  static logged() {
    return [...current().logs];
  }

  // The imports' answers.

  findUser(address) {
    const key = directoryKey(address);
    if (key.sip !== undefined) {
      return this.users.find((u) => keyOf(u.sipAddress) === key.sip);
    }
    if (key.number !== undefined) {
      return this.users.find((u) => u.number === key.number);
    }
    return undefined;
  }

  findContact(address) {
    const key = directoryKey(address);
    if (key.sip !== undefined) {
      return this.contacts.find((c) => keyOf(c.sipAddress) === key.sip);
    }
    if (key.number !== undefined) {
      return this.contacts.find((c) => normalizeNumber(c.number) === key.number);
    }
    return undefined;
  }

  findDialPlan(key) {
    const k = key.toLowerCase();
    return this.dialPlans.find((d) => d.phoneContext.toLowerCase() === k || d.name.toLowerCase() === k);
  }

  findContactDialPlan(address) {
    const contact = this.findContact(address);
    const entry = contact && this.contactDialPlans.find(([sip]) => sip === contact.sipAddress);
    return entry && this.findDialPlan(entry[1]);
  }

  findHostedPolicy(scope) {
    return this.hostedPolicies.find(([s]) => s.tag === scope.tag && s.val === scope.val)?.[1];
  }

  findHostedRoute(granted, site) {
    const policy =
      (granted !== undefined ? this.findHostedPolicy({ tag: 'named', val: granted }) : undefined) ??
      (site !== undefined ? this.findHostedPolicy({ tag: 'site', val: site }) : undefined) ??
      this.findHostedPolicy({ tag: 'global' });
    if (policy === undefined) {
      return undefined;
    }
    const nextHop = this.tenant.edge;
    return {
      destination: policy.destination,
      organization: policy.organizations[0],
      nextHop,
      nextHopHealthy: nextHop !== undefined && !this.isDown(nextHop),
    };
  }

  findHealthyUmServers(of) {
    const plan = of.tag === 'key' ? this.findDialPlan(of.val) : this.findContactDialPlan(of.val);
    return plan && plan.servers.filter((s) => !this.isDown(s.uri));
  }

  isDown(uri) {
    return this.downTargets.includes(uri);
  }

  findRerouting(site) {
    const entry = site !== undefined ? this.siteReroute.find(([s]) => s === site) : undefined;
    return { ...(entry ? entry[1] : this.reroute) };
  }
}

function sipKey(address) {
  return address.startsWith('sips:') ? `sip:${address.slice(5)}` : address;
}

function keyOf(sip) {
  const uri = parseUri(sip);
  return uri ? sipKey(uri.address()) : '';
}

function directoryKey(address) {
  const n = normalizeNumber(address);
  if (n !== undefined) {
    return { number: n };
  }
  const uri = parseUri(address);
  if (uri === undefined) {
    return {};
  }
  if (uri.scheme === 'tel') {
    const number = uri.number();
    return number === undefined ? {} : { number };
  }
  return { sip: sipKey(uri.address()) };
}

/** The standard algorithm's answers, as the router gives them to the `standard` import. */
export const standardAnswers = {
  route: (wire) => reference.route(new Request(wire)),
  onFailure: (wire, failure) => reference.onFailure(new Request(wire), failure),
};

/** An INVITE to `requestUri`. */
export function invite(requestUri) {
  return new RequestBuilder('INVITE', requestUri);
}

/** Builds a request as the router would pass it. */
export class RequestBuilder {
  constructor(method, requestUri) {
    this.method = method;
    this.requestUri = requestUri;
    this.fromUri = 'sip:caller@example.com';
    this.toUri = requestUri.split(';')[0];
    this.extra = [];
    this.src = {
      address: { tag: 'ipv4', val: [192, 0, 2, 10] },
      port: 5060,
      transport: 'udp',
      tlsPeerName: undefined,
    };
  }

  /** The From URI. */
  from(uri) {
    this.fromUri = uri;
    return this;
  }

  /** The To URI. */
  to(uri) {
    this.toUri = uri;
    return this;
  }

  /** One more header field. */
  header(name, value) {
    this.extra.push([name, value]);
    return this;
  }

  /** Where the request came from. */
  source(source) {
    this.src = source;
    return this;
  }

  /** The `Request`. */
  build() {
    return new Request(this.wire());
  }

  /** The contract's request record. */
  wire() {
    let head = '';
    const bytes = (text) => new TextEncoder().encode(text).length;
    const span = (text) => {
      const s = { start: bytes(head), len: bytes(text) };
      head += text;
      return s;
    };
    const method = span(this.method);
    head += ' ';
    const requestUri = span(this.requestUri);
    head += ' SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\nFrom: <';
    const fromUri = span(this.fromUri);
    head += '>;tag=';
    const fromTag = span('1928301774');
    head += '\r\nTo: <';
    const toUri = span(this.toUri);
    head += '>\r\nCall-ID: ';
    const callId = span('a84b4c76e66710@pc33.example.com');
    head += `\r\nCSeq: 1 ${this.method}\r\n`;
    for (const [name, value] of this.extra) {
      head += `${name}: ${value}\r\n`;
    }
    return {
      head,
      method,
      requestUri,
      fromUri,
      fromTag,
      toUri,
      toTag: undefined,
      callId,
      cseq: 1,
      source: this.src,
    };
  }
}
