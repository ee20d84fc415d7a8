// Native tests under Node against the SDK's TestHost (as the Rust crate's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decision } from '@exum-router/policy-sdk';
import { TestHost, invite } from '@exum-router/policy-sdk/testing';
import { isOpen, parse, policy } from '../src/policy.js';

const CONFIG = 'main=+14255550100; attendant=+14255550150; open=08:00-18:00; days=mon-fri';
/** Monday 2026-01-05 10:00 UTC. */
const MONDAY_10 = 1767607200;
const main = () => invite('sip:+14255550100@contoso.com;user=phone').build();

function setup(at: number) {
  new TestHost('contoso')
    .edge('sip:exap.um.outlook.com;transport=tls')
    .contact('sip:aa@contoso.com', '+14255550150', 'auto-attendant')
    .hostedPolicy({ tag: 'global' }, 'exap.um.outlook.com', ['contoso.onmicrosoft.com'])
    .at(at, 0)
    .install();
  assert.equal(policy.init(CONFIG), undefined);
}

test('business hours follow the standard algorithm', () => {
  setup(MONDAY_10);
  assert.deepEqual(policy.route(main()), Decision.standard());
});

test('after hours the main number goes to the attendant', () => {
  setup(MONDAY_10 + 9 * 3600);
  const d = policy.route(main());
  assert.equal(d.tag, 'forward');
  if (d.tag === 'forward') {
    assert.equal(
      d.val.requestUri,
      'sip:aa@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com',
    );
    assert.equal(d.val.targets[0].uri, 'sip:exap.um.outlook.com;transport=tls');
  }
});

test('weekends are closed and other numbers untouched', () => {
  setup(MONDAY_10 + 5 * 86400);
  assert.equal(policy.route(main()).tag, 'forward');
  assert.deepEqual(policy.route(invite('sip:+14255550111@contoso.com;user=phone').build()), Decision.standard());
});

test("local time uses the tenant's offset", () => {
  const h = parse(CONFIG);
  assert.ok(typeof h !== 'string');
  if (typeof h !== 'string') {
    assert.ok(isOpen(h, MONDAY_10, 0));
    assert.ok(!isOpen(h, MONDAY_10, -8 * 60), '02:00 in UTC-8');
  }
});

test('refuses a bad configuration', () => {
  assert.match(String(parse('main=+1425')), /attendant/);
  assert.equal(typeof parse('main=+1425;attendant=+1426;open=8-18'), 'string');
  assert.equal(typeof parse('main=+1425;attendant=+1426;days=mon-xyz'), 'string');
  assert.equal(typeof parse('main=5550100;attendant=+1426'), 'string');
});
