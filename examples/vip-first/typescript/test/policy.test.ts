// Native tests under Node against the SDK's TestHost (as the Rust crate's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { standard } from '@exum-router/policy-sdk';
import { TestHost, invite } from '@exum-router/policy-sdk/testing';
import { policy } from '../src/policy.js';

const CONFIG = 'server=sip:vip-um.contoso.com;transport=tls; callers=sip:ceo@contoso.com, sip:cfo@contoso.com';

function host() {
  return new TestHost('contoso')
    .onPremisesUser('sip:bob@contoso.com', 'eum:bob@contoso.com;phone-context=DP1.contoso.com')
    .dialPlan('DP1', 'DP1.contoso.com', [['sip:um1.contoso.com;transport=tls', 3000]]);
}

test('VIP callers try the VIP server first, then the standard targets', () => {
  host().install();
  assert.equal(policy.init(CONFIG), undefined);
  const d = policy.route(invite('sip:bob@contoso.com;opaque=app:voicemail').from('sip:ceo@contoso.com').build());
  assert.equal(d.tag, 'forward');
  if (d.tag === 'forward') {
    assert.deepEqual(
      d.val.targets.map((t) => t.uri),
      ['sip:vip-um.contoso.com;transport=tls', 'sip:um1.contoso.com;transport=tls'],
    );
    assert.ok(d.val.addHeaders.some((h) => h.name === 'X-Exum-Vip'));
  }
});

test('everyone else gets the standard decision unchanged', () => {
  host().install();
  policy.init(CONFIG);
  const req = invite('sip:bob@contoso.com;opaque=app:voicemail').from('sip:z@fabrikam.com').build();
  assert.deepEqual(policy.route(req), standard.route(req));
  const unknown = policy.route(invite('sip:nobody@contoso.com;opaque=app:voicemail').from('sip:ceo@contoso.com').build());
  assert.ok(unknown.tag === 'reject' && unknown.val.code === 404);
});

test('a bad configuration is refused with the reason', () => {
  assert.match(policy.init('callers=sip:a@b.com') ?? '', /server=/);
  assert.match(policy.init('server=nope; callers=sip:a@b.com') ?? '', /not a SIP URI/);
  assert.match(policy.init('server=sip:vip.example.com; callers=') ?? '', /at least one/);
});
