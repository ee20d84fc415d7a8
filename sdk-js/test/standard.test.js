// The test host's standard algorithm, held to the router's own tests of it
// (policies/standard/src/tests.rs, ported).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decision, Target, host, standard } from '@exum-router/policy-sdk';
import { TestHost, invite } from '@exum-router/policy-sdk/testing';

const route = (req) => standard.route(req);

function contoso() {
  return new TestHost('contoso')
    .edge('sip:edge.contoso.com:5061;transport=tls')
    .hostedUser('sip:alice@contoso.com', undefined, 'redmond')
    .onPremisesUser('sip:bob@contoso.com', 'eum:bob@contoso.com;phone-context=DP1.contoso.com')
    .hostedPolicy({ tag: 'global' }, 'exap.um.outlook.com', ['contoso.onmicrosoft.com'])
    .dialPlan('DP1', 'DP1.contoso.com', [
      ['sip:um1.contoso.com;transport=tcp', 3000],
      ['sip:um2.contoso.com;transport=tcp', 2000],
    ])
    .contact('sip:sa@contoso.com', '+14255550199', 'subscriber-access');
}

function outcome(d) {
  if (d.tag === 'forward') {
    return [d.val.targets[0].uri, d.val.requestUri ?? ''];
  }
  assert.equal(d.tag, 'reject', `unexpected ${JSON.stringify(d)}`);
  return [String(d.val.code), d.val.headers[0]?.value ?? ''];
}

test('a hosted user goes to the edge with routing data in the Request-URI', () => {
  contoso().install();
  const d = route(invite('sip:alice@contoso.com;gruu;opaque=app:voicemail').from('sip:carol@fabrikam.com').build());
  assert.equal(d.tag, 'forward');
  assert.equal(d.val.targets[0].uri, 'sip:edge.contoso.com:5061;transport=tls');
  assert.equal(
    d.val.requestUri,
    'sip:alice@contoso.com;opaque=app:voicemail;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com',
  );
});

test('an on-premises user gets Diversion and serial UM servers', () => {
  contoso().install();
  const req = invite('sip:bob@contoso.com;opaque=app:voicemail')
    .from('sip:carol@contoso.com')
    .header('Diversion', '<sip:old@contoso.com>')
    .build();
  const d = route(req);
  assert.deepEqual(
    d.val.targets.map((t) => [t.uri, t.timeoutMs]),
    [
      ['sip:um1.contoso.com;transport=tcp', 3000],
      ['sip:um2.contoso.com;transport=tcp', 2000],
    ],
  );
  assert.deepEqual(d.val.removeHeaders, ['Diversion']);
  assert.equal(d.val.addHeaders[0].value, '<sip:bob@contoso.com>;reason=no-answer');
});

test('a contact by number is routed as hosted; an unknown target is 404', () => {
  contoso().install();
  assert.equal(route(invite('sip:+14255550199@contoso.com;user=phone').build()).tag, 'forward');
  const d = route(invite('sip:nobody@contoso.com;opaque=app:voicemail').build());
  assert.equal(d.val.code, 404);
});

test('a request that is not voice-mail-bound goes to the default next hop or gets 404', () => {
  const req = invite('sip:alice@contoso.com').build();
  contoso().install();
  assert.equal(route(req).val.code, 404);
  contoso().defaultNextHop('sip:pool.contoso.com;transport=tcp').install();
  const d = route(req);
  assert.deepEqual(d.val.targets.map((t) => t.uri), ['sip:pool.contoso.com;transport=tcp']);
  assert.equal(d.val.requestUri, undefined, 'forwarded as received');
});

test("the tenant's domains are what the policy sees", () => {
  contoso().domains(['contoso.com', 'contoso.net']).install();
  assert.deepEqual(host.settings().domains, ['contoso.com', 'contoso.net']);
  new TestHost('contoso').install();
  assert.deepEqual(host.settings().domains, ['contoso.com']);
});

test("site rerouting applies to a contact's site and the tenant's otherwise", () => {
  const h = () =>
    contoso()
      .rerouting('sip:gw.contoso.com;transport=tcp', '+14255550100', '+14255550101')
      .siteRerouting('paris', 'sip:gw.paris.contoso.com;transport=tcp', '+33155550100', '+33155550101')
      .contact('sip:aa-paris@contoso.com', '+33155550150', 'auto-attendant')
      .contact('sip:aa@contoso.com', '+14255550150', 'auto-attendant');
  const failure = { attempts: [{ target: 'sip:edge.contoso.com:5061;transport=tls', outcome: { tag: 'timeout' } }] };
  const reroutedTo = (req) => {
    const d = standard.onFailure(req, failure);
    assert.equal(d.tag, 'forward');
    return [d.val.targets[0].uri, d.val.requestUri];
  };
  const paris = invite('sip:aa-paris@contoso.com').build();
  const other = invite('sip:aa@contoso.com').build();
  h().install();
  assert.deepEqual(reroutedTo(paris), [
    'sip:gw.contoso.com;transport=tcp',
    'sip:+14255550100@gw.contoso.com;user=phone',
  ]);
  h().contactSite('sip:aa-paris@contoso.com', 'paris').install();
  assert.deepEqual(reroutedTo(paris), [
    'sip:gw.paris.contoso.com;transport=tcp',
    'sip:+33155550100@gw.paris.contoso.com;user=phone',
  ]);
  assert.equal(reroutedTo(other)[0], 'sip:gw.contoso.com;transport=tcp');
  h()
    .siteRerouting('paris', 'sip:gw2.paris.contoso.com', '+33155550200', '+33155550201')
    .contactSite('sip:aa-paris@contoso.com', 'paris')
    .install();
  assert.equal(reroutedTo(paris)[0], 'sip:gw2.paris.contoso.com');
});

test('contactSite names a contact added before', () => {
  assert.throws(() => contoso().contactSite('sip:nobody@contoso.com', 'paris'), /no contact sip:nobody@contoso.com/);
});

test('the standard decision takes a target first and one after', () => {
  contoso().install();
  const req = invite('sip:bob@contoso.com;opaque=app:voicemail').from('sip:carol@contoso.com').build();
  const d = Decision.mapForward(route(req), (f) =>
    f.first(new Target('sip:vip-um.contoso.com;transport=tls')).then(new Target('sip:last-um.contoso.com')),
  );
  assert.deepEqual(
    d.val.targets.map((t) => t.uri),
    [
      'sip:vip-um.contoso.com;transport=tls',
      'sip:um1.contoso.com;transport=tcp',
      'sip:um2.contoso.com;transport=tcp',
      'sip:last-um.contoso.com',
    ],
  );
  assert.equal(d.val.addHeaders[0].value, '<sip:bob@contoso.com>;reason=no-answer');
  const rejected = Decision.mapForward(route(invite('sip:nobody@contoso.com;opaque=app:voicemail').build()), (f) =>
    f.then(new Target('sip:never.contoso.com')),
  );
  assert.equal(rejected.tag, 'reject');
  assert.equal(rejected.val.code, 404);
});

test("the granted hosted policy wins over the site's and the site's over the global one", () => {
  contoso()
    .hostedUser('sip:gina@contoso.com', 'vip', 'redmond')
    .hostedUser('sip:nodest@contoso.com', 'empty', 'redmond')
    .hostedPolicy({ tag: 'site', val: 'redmond' }, 'site.um.example', ['redmond.example'])
    .hostedPolicy({ tag: 'named', val: 'vip' }, 'vip.um.example', [])
    .hostedPolicy({ tag: 'named', val: 'empty' }, undefined, ['x.example'])
    .install();
  assert.equal(
    outcome(route(invite('sip:gina@contoso.com;opaque=app:voicemail').build()))[1],
    'sip:gina@contoso.com;opaque=app:voicemail;ms-destination=vip.um.example',
  );
  assert.match(
    outcome(route(invite('sip:alice@contoso.com;opaque=app:voicemail').build()))[1],
    /;ms-destination=site\.um\.example;ms-organization=redmond\.example$/,
  );
  const [code, diag] = outcome(route(invite('sip:nodest@contoso.com;opaque=app:voicemail').build()));
  assert.deepEqual([code, diag.startsWith('15031;')], ['480', true]);
  new TestHost('contoso').edge('sip:edge.contoso.com:5061;transport=tls').hostedUser('sip:alice@contoso.com').install();
  const [code2, diag2] = outcome(route(invite('sip:alice@contoso.com;opaque=app:voicemail').build()));
  assert.deepEqual([code2, diag2.startsWith('15031;')], ['480', true]);
});

test('a hosted call whose next hop is down is rerouted, and one without next hop gets 15033', () => {
  contoso()
    .down('sip:edge.contoso.com:5061;transport=tls')
    .rerouting('sip:gw.contoso.com', '+14255550000', '+14255550001')
    .install();
  assert.deepEqual(outcome(route(invite('sip:alice@contoso.com;opaque=app:voicemail').build())), [
    'sip:gw.contoso.com',
    'sip:+14255550000@gw.contoso.com;user=phone',
  ]);
  contoso().down('sip:edge.contoso.com:5061;transport=tls').install();
  const [code, diag] = outcome(route(invite('sip:alice@contoso.com;opaque=app:voicemail').build()));
  assert.deepEqual([code, diag.startsWith('15030;')], ['480', true]);
  const noEdge = contoso();
  noEdge.tenant.edge = undefined;
  noEdge.install();
  const [code3, diag3] = outcome(route(invite('sip:alice@contoso.com;opaque=app:voicemail').build()));
  assert.deepEqual([code3, diag3.startsWith('15033;')], ['480', true]);
});

test('UM servers marked down are skipped for users and contacts, and all down reroutes', () => {
  const h = () => contoso().onPremisesContact('sip:aa@contoso.com', '+14255550150', 'auto-attendant', 'DP1');
  h().down('sip:um1.contoso.com;transport=tcp').install();
  for (const ruri of ['sip:bob@contoso.com;opaque=app:voicemail', 'sip:+14255550150@contoso.com;user=phone']) {
    const d = route(invite(ruri).build());
    assert.deepEqual(
      d.val.targets.map((t) => [t.uri, t.timeoutMs]),
      [['sip:um2.contoso.com;transport=tcp', 2000]],
      ruri,
    );
  }
  assert.equal(route(invite('sips:bob@contoso.com;opaque=app:voicemail').build()).val.targets[0].transport, 'tls');
  h()
    .down('sip:um1.contoso.com;transport=tcp')
    .down('sip:um2.contoso.com;transport=tcp')
    .rerouting('sip:gw.contoso.com', '+14255550000', '+14255550001')
    .install();
  for (const ruri of ['sip:bob@contoso.com;opaque=app:voicemail', 'sip:+14255550150@contoso.com;user=phone']) {
    assert.equal(outcome(route(invite(ruri).build()))[0], 'sip:gw.contoso.com', ruri);
  }
  contoso().onPremisesUser('sip:dan@contoso.com', 'eum:dan@contoso.com;phone-context=DP9.contoso.com').install();
  const [code, diag] = outcome(route(invite('sip:dan@contoso.com;opaque=app:voicemail').build()));
  assert.deepEqual([code, diag.startsWith('15032;')], ['480', true]);
});

test('a call that may not be diverted is not rerouted to voice mail', () => {
  contoso().rerouting('sip:gw.contoso.com;transport=tcp', '+14255550100', '+14255550101').contact('sip:aa@contoso.com', '+14255550150', 'auto-attendant').install();
  const failure = { attempts: [{ target: 'sip:edge.contoso.com:5061;transport=tls', outcome: { tag: 'timeout' } }] };
  for (const value of ['normal-no-diversion', 'Private-No-Diversion']) {
    const req = invite('sip:aa@contoso.com').header('Ms-Sensitivity', value).build();
    assert.equal(req.noDiversion(), true);
    const d = standard.onFailure(req, failure);
    assert.equal(d.tag, 'reject', value);
    assert.equal(d.val.code, 480);
    assert.match(d.val.headers[0].value, /^15030;/);
  }
  const ordinary = invite('sip:aa@contoso.com').header('Ms-Sensitivity', 'private').build();
  assert.equal(ordinary.noDiversion(), false);
  assert.equal(standard.onFailure(ordinary, failure).tag, 'forward');
});
