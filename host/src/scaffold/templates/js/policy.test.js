// Native tests of the policy under Node, against the SDK's TestHost: `npm test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { standard } from '@exum-router/policy-sdk';
import { TestHost, invite } from '@exum-router/policy-sdk/testing';
import { policy } from '../src/policy.js';

/** A tenant with one on-premises user on dial plan DP1. */
function contoso() {
  return new TestHost('contoso')
    .onPremisesUser('sip:bob@contoso.com', 'eum:bob@contoso.com;phone-context=DP1.contoso.com')
    .dialPlan('DP1', 'DP1.contoso.com', [['sip:um1.contoso.com;transport=tls', 3000]]);
}

test('listed callers reach the standard targets with the header', () => {
  contoso().install();
  assert.equal(policy.init('sip:ceo@contoso.com'), undefined, 'the configuration is valid');
  const req = invite('sip:bob@contoso.com;opaque=app:voicemail').from('sip:ceo@contoso.com').build();
  const d = policy.route(req);
  assert.equal(d.tag, 'forward');
  assert.equal(d.val.targets[0].uri, 'sip:um1.contoso.com;transport=tls');
  assert.ok(d.val.addHeaders.some((h) => h.name === 'X-Priority-Caller'));
});

test('other callers get the standard decision', () => {
  contoso().install();
  policy.init('sip:ceo@contoso.com');
  const req = invite('sip:bob@contoso.com;opaque=app:voicemail').from('sip:someone@fabrikam.com').build();
  assert.deepEqual(policy.route(req), standard.route(req));
});

test('a bad configuration is refused', () => {
  assert.match(policy.init('not an address'), /not a SIP address/);
});
