// Types of @exum-router/policy-sdk. The contract's records come from
// `wit/` (generated from sdk/wit/policy.wit by `npm run gen-types`).

import type * as wit from './wit/interfaces/exum-policy-types.js';
import type * as dir from './wit/interfaces/exum-policy-directory.js';
import type { Level } from './wit/interfaces/exum-policy-log.js';

export type { Level };
export type WireRequest = wit.Request;
export type Header = wit.Header;
export type Transport = wit.Transport;
export type Source = wit.Source;
export type IpAddress = wit.IpAddress;
export type Failure = wit.Failure;
export type Attempt = wit.Attempt;
export type Outcome = wit.Outcome;
export type User = dir.User;
export type UmContact = dir.UmContact;
export type Voicemail = dir.Voicemail;
export type ContactKind = dir.ContactKind;
export type PolicyScope = dir.PolicyScope;
export type HostedVoicemailPolicy = dir.HostedVoicemailPolicy;
export type UmServer = dir.UmServer;
export type DialPlan = dir.DialPlan;
export type DialPlanOf = dir.DialPlanOf;
export type Rerouting = dir.Rerouting;
export type TenantSettings = dir.TenantSettings;
export type HostedRoute = dir.HostedRoute;

/** A decision: what `route` and `onFailure` return. */
export type Decision = wit.Decision;

/** One URI parameter. */
export class Param {
  constructor(name: string, value: string | undefined);
  name: string;
  value: string | undefined;
}

/** Why a URI is refused. */
export class UriError extends Error {}

/** A SIP, SIPS or tel URI. */
export class Uri {
  constructor(fields?: Partial<Pick<Uri, 'scheme' | 'user' | 'host' | 'port' | 'params'>>);
  scheme: string;
  user: string | undefined;
  host: string;
  port: number | undefined;
  params: Param[];
  static parse(text: string): Uri;
  /** undefined if absent, null for a flag, else the value. */
  param(name: string): string | null | undefined;
  hasParam(name: string): boolean;
  isVoicemail(): boolean;
  address(): string;
  number(): string | undefined;
  numberKey(): string | undefined;
  setParam(name: string, value?: string | null): this;
  clone(): Uri;
  toString(): string;
}

export function parseUri(text: string): Uri | undefined;
export function addrSpec(text: string): string;
export function normalizeNumber(number: string): string | undefined;
export function numberKey(number: string): string | undefined;
export function extension(number: string): string | undefined;
export function reasonPhrase(code: number): string;
export function longHeaderName(name: string): string;

/** The request to route, parsed on first use. */
export class Request {
  constructor(wire: WireRequest);
  readonly wire: WireRequest;
  readonly method: string;
  readonly requestUriText: string;
  readonly requestUri: Uri;
  readonly from: Uri;
  readonly fromTag: string | undefined;
  readonly to: Uri;
  readonly toTag: string | undefined;
  readonly callId: string;
  readonly cseq: number;
  readonly source: Source;
  readonly head: string;
  readonly headers: Array<[string, string]>;
  readonly fromAddress: string;
  readonly requestUriAddress: string;
  header(name: string): string | undefined;
  headersNamed(name: string): string[];
  isOwnMailboxCall(): boolean;
  /** Whether the call must not be diverted: `Ms-Sensitivity: normal-no-diversion` or `private-no-diversion`. */
  noDiversion(): boolean;
  tenant(): string;
}

export class Target implements wit.Target {
  constructor(uri: string);
  uri: string;
  transport: Transport | undefined;
  timeoutMs: number | undefined;
  withTimeoutMs(timeoutMs: number): this;
  withTransport(transport: Transport): this;
}

export class Forward implements wit.Forward {
  constructor(targets?: wit.Target[], requestUri?: string, addHeaders?: Header[], removeHeaders?: string[]);
  targets: wit.Target[];
  requestUri: string | undefined;
  addHeaders: Header[];
  removeHeaders: string[];
  static to(targets: wit.Target[]): Forward;
  static from(record: wit.Forward): Forward;
  first(target: wit.Target): this;
  then(target: wit.Target): this;
  withRequestUri(uri: string | Uri): this;
  addHeader(name: string, value: string): this;
  removeHeader(name: string): this;
}

export class Reject implements wit.Reject {
  constructor(code: number, reason?: string, headers?: Header[]);
  code: number;
  reason: string;
  headers: Header[];
  withHeader(header: Header): this;
}

export class Redirect implements wit.Redirect {
  constructor(code: number, contacts: string[], headers?: Header[]);
  code: number;
  contacts: string[];
  headers: Header[];
}

export function msDiagnostics(code: number, reason: string): Header;

export const Decision: {
  forward(forward: wit.Forward): Decision;
  reject(code: number, reason?: string): Decision;
  rejectWithDiagnostics(code: number, reason: string, diagCode: number, diagReason: string): Decision;
  redirect(code: number, contacts: string[]): Decision;
  standard(): Decision;
  mapForward(decision: Decision, f: (forward: Forward) => wit.Forward): Decision;
};

/** A policy: `route` is required; `init` may return an error message. */
export interface Policy {
  init?(config: string): string | void | undefined;
  route(req: Request): Decision;
  onFailure?(req: Request, failure: Failure): Decision;
}

/** The component's `handler` export. */
export interface Handler {
  init(config: string): void;
  route(req: WireRequest): Decision;
  onFailure(req: WireRequest, failure: Failure): Decision;
}

export function exportPolicy(policy: Policy): Handler;

export function resolveHostedPolicy(granted?: string, site?: string): HostedVoicemailPolicy | undefined;

export namespace host {
  function lookupUser(address: string): User | undefined;
  function lookupContact(address: string): UmContact | undefined;
  function lookupHostedVoicemailPolicy(scope: PolicyScope): HostedVoicemailPolicy | undefined;
  function lookupDialPlan(key: string): DialPlan | undefined;
  function lookupContactDialPlan(address: string): DialPlan | undefined;
  function lookupRerouting(site?: string): Rerouting;
  function settings(): TenantSettings;
  function resolveHostedRoute(granted?: string, site?: string): HostedRoute | undefined;
  function healthyUmServers(of: DialPlanOf): UmServer[] | undefined;
  function targetHealthy(uri: string): boolean;
  /** `unixSeconds` as a number (the contract's s64 fits one until year 285,000,000). */
  function now(): { unixSeconds: number; utcOffsetMinutes: number };
  function log(level: Level, message: string): void;
}

export namespace standard {
  function route(req: Request): Decision;
  function onFailure(req: Request, failure: Failure): Decision;
}

export namespace routing {
  const NO_HOSTED_POLICY: [number, string];
  const NO_HOSTING_PROVIDER: [number, string];
  function hostedForwardAndHealth(requestUri: Uri, granted?: string, site?: string): { decision: Decision; healthy: boolean };
  function hostedForward(requestUri: Uri, granted?: string, site?: string): Decision;
  function withDiversion(req: Request, forward: Forward): Forward;
  function withDiversionTo(forward: Forward, mailbox?: string): Forward;
  function umServerTargets(servers: UmServer[], tls: boolean): Target[];
  function dialPlanTargets(plan: DialPlan, tls: boolean): Target[];
  function dialPlanForward(req: Request, plan: DialPlan): Forward | undefined;
}
