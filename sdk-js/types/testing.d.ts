// Types of @exum-router/policy-sdk/testing.
import type { Decision, Failure, Level, PolicyScope, Request, Source, User, WireRequest, ContactKind } from './index.js';

export function user(sip: string): User;

export class TestHost {
  constructor(id: string);
  edge(uri: string): this;
  defaultNextHop(uri: string): this;
  domains(domains: string[]): this;
  hostedUser(sip: string, granted?: string, site?: string): this;
  onPremisesUser(sip: string, eum: string): this;
  user(record: Partial<User> & { sipAddress: string }): this;
  contact(sip: string, number: string, kind: ContactKind, granted?: string): this;
  onPremisesContact(sip: string, number: string, kind: ContactKind, plan: string): this;
  hostedPolicy(scope: PolicyScope, destination: string | undefined, organizations?: string[]): this;
  dialPlan(name: string, phoneContext: string, servers: Array<[string, number]>): this;
  rerouting(gateway: string, autoAttendant: string, subscriberAccess: string): this;
  siteRerouting(site: string, gateway: string, autoAttendant: string, subscriberAccess: string): this;
  contactSite(sip: string, site: string): this;
  down(uri: string): this;
  at(unixSeconds: number, utcOffsetMinutes?: number): this;
  install(): this;
  static logged(): Array<[Level, string]>;
}

export class RequestBuilder {
  constructor(method: string, requestUri: string);
  from(uri: string): this;
  to(uri: string): this;
  header(name: string, value: string): this;
  source(source: Source): this;
  build(): Request;
  wire(): WireRequest;
}

export function invite(requestUri: string): RequestBuilder;

export const standardAnswers: {
  route(req: WireRequest): Decision;
  onFailure(req: WireRequest, failure: Failure): Decision;
};
