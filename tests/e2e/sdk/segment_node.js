// Sends one message of each Segment call through @segment/analytics-node, unmodified, to the
// gateway at HOST with write key KEY, then flushes and closes the client. Prints one JSON line:
// {"failures": [...], "batches": [<each request body as sent>]}. Used by tests/e2e/segment_sdks.rs.
'use strict';
const { Analytics } = require('@segment/analytics-node');

const [host, writeKey] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host, flushAt: 20, flushInterval: 100, maxRetries: 3 });
const failures = [];
const batches = [];
analytics.on('error', (err) => failures.push(`error event: ${err.code} ${err.reason}`));
analytics.on('http_request', (request) => batches.push(JSON.parse(request.body)));
analytics.on('http_response', (response) => {
  if (response.status !== 200) failures.push(`status ${response.status}`);
});
const done = (err) => {
  if (err) failures.push(`callback: ${err}`);
};

const user = 'node-user-1';
analytics.track({ messageId: 'node-track-1', userId: user, event: 'Order Completed',
  properties: { total: 42.5, items: ['a', 'b'] }, timestamp: '2026-01-31T12:00:00.250Z' }, done);
analytics.identify({ messageId: 'node-identify-1', userId: user, traits: { plan: 'pro' },
  timestamp: '2026-01-31T12:00:01.000Z' }, done);
analytics.page({ messageId: '0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b', anonymousId: 'node-anon-1',
  category: 'Docs', name: 'Pricing', properties: { path: '/pricing' } }, done);
analytics.screen({ messageId: 'node-screen-1', userId: user, name: 'Settings',
  timestamp: '2024-02-29T23:59:59.999Z' }, done);
analytics.group({ messageId: 'node-group-1', userId: user, groupId: 'acme', traits: { seats: 5 },
  timestamp: '2025-12-31T23:59:59.500+01:00' }, done);
analytics.alias({ messageId: 'node-alias-1', userId: user, previousId: 'node-anon-1',
  timestamp: '2026-01-31T12:00:02.000Z' }, done);

analytics
  .closeAndFlush({ timeout: 20000 })
  .then(() => console.log(JSON.stringify({ failures, batches })))
  .catch((err) => {
    failures.push(`closeAndFlush: ${err}`);
    console.log(JSON.stringify({ failures, batches }));
  });
