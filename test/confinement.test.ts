import fs from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { decode as decodeJwt, type User } from '@nats-io/jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IngressReply,
  ManagementClient,
  busAuthFromEnv,
  credsFileAuth,
  decode,
  decodeRaw,
  encode,
  guestControlSubject,
  guestInboxPrefix,
  guestPermissions,
  hardwareSubjects,
  heartbeatSubject,
  hypercallSubject,
  HypercallReply,
  anyHeartbeatSubject,
  ingressSubject,
  mgmtSubject,
  namespace,
  vnicRxSubject,
  vnicTxSubject,
  waitFor,
  type Namespace,
  type NatsConnection,
  type Subscription,
} from '@vmsim/shared';
import { GuestCredentials } from '@vmsim/hypervisor';
import { EventLog } from './helpers/events.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

/**
 * Issue 6 point 5: every guest connects as its own NATS user, minted by the hypervisor,
 * that reaches its own subjects only. Against a real nats-server with JWT auth on.
 */
describe('confinement: each guest on the bus with its own credentials', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let ns: Namespace;
  /** A connection with web1's credentials, minted as the hypervisor mints them. */
  let guest: NatsConnection;
  /** Permission errors the server sent the guest's connection: "publish x" / "subscription x". */
  const denied: string[] = [];

  beforeAll(async () => {
    t = await startTestStack({ timeScale: 4, env: { VMSIM_HEARTBEAT_MS: '200' } });
    nc = t.nc;
    ns = namespace(t.ns);
    const events = new EventLog(nc, t.ns, 'host1');
    for (const name of ['web1', 'web2']) {
      await t.api.call('define', { name, app: 'web', os: 'linux', memoryMiB: 256, diskGiB: 0.25 });
      await t.api.call('start', { name });
    }
    await events.waitFor('web1', 'running', 60_000);
    await events.waitFor('web2', 'running', 60_000);
    const user = await new GuestCredentials(t.nats.signer, ns, 'host1').for('web1');
    guest = await connect({
      servers: t.nats.url,
      name: 'confinement-web1',
      inboxPrefix: guestInboxPrefix(ns, 'web1'),
      ...busAuthFromEnv({ NATS_JWT: user.jwt, NATS_SEED: user.seed }),
    });
    void (async () => {
      for await (const s of guest.status()) {
        if (s.type === 'error' && s.error.name === 'PermissionViolationError') {
          const e = s.error as Error & { operation: string; subject: string };
          denied.push(`${e.operation} ${e.subject}`);
        }
      }
    })();
  });

  afterAll(async () => {
    await guest?.close();
    await t?.stop();
  });

  /**
   * Publishes `subject` as the guest, then a marker on its own heartbeat subject; once the
   * marker reached an observer, a message that got through would have reached it first.
   */
  async function publishAsGuest(subject: string): Promise<boolean> {
    let got = false;
    let marked = false;
    const marker = `marker-${Math.random()}`;
    // Only the guest's own message counts: the hypervisor publishes on some of these
    // subjects itself (its host work goes to the cpu, say).
    const probe = `probe-${Math.random()}`;
    const target = nc.subscribe(subject, {
      callback: (_e, m) => {
        try {
          if ((decodeRaw(m.data) as { probe?: unknown } | null)?.probe === probe) got = true;
        } catch {
          // Not msgpack: not the guest's message.
        }
      },
    });
    const own = nc.subscribe(heartbeatSubject(ns, 'web1'), {
      callback: (_e, m) => {
        if (new TextDecoder().decode(m.data) === marker) marked = true;
      },
    });
    await nc.flush();
    guest.publish(subject, encode({ op: 'cpu', cycles: 1, probe }));
    guest.publish(heartbeatSubject(ns, 'web1'), new TextEncoder().encode(marker));
    await waitFor(() => marked, 5_000, 'the marker on its own subject');
    await nc.flush();
    target.unsubscribe();
    own.unsubscribe();
    return got;
  }

  it('lets the guest publish on its own subjects and call its own hypercalls', async () => {
    for (const s of [heartbeatSubject(ns, 'web1'), vnicTxSubject(ns, 'web1')])
      expect(await publishAsGuest(s), s).toBe(true);
    const reply = decode(
      (await guest.request(hypercallSubject(ns, 'web1'), encode({ op: 'cpu', cycles: 1000 }), { timeout: 10_000 }))
        .data,
      HypercallReply,
    );
    expect(reply.ok).toBe(true);
    expect(denied).toEqual([]);
  });

  it("denies publishing to another VM's subjects, the host-agent and the management API", async () => {
    const foreign = [
      hypercallSubject(ns, 'web2'),
      vnicRxSubject(ns, 'web2'),
      guestControlSubject(ns, 'web2'),
      `${guestInboxPrefix(ns, 'web2')}.x.1`,
      // Its own inbound subjects too: no frames or commands spoofed to itself.
      vnicRxSubject(ns, 'web1'),
      guestControlSubject(ns, 'web1'),
      hardwareSubjects.cpu(ns, 'host1'),
      hardwareSubjects.memAlloc(ns, 'host1'),
      hardwareSubjects.disk(ns, 'host1', 'sda'),
      mgmtSubject(ns, 'host1', 'destroy'),
      mgmtSubject(ns, 'host1', 'define'),
      ingressSubject(ns, 'host1', 'web2'),
    ];
    for (const s of foreign) {
      expect(await publishAsGuest(s), `${s} got through`).toBe(false);
      await waitFor(() => denied.includes(`publish ${s}`), 5_000, `the server to deny publish ${s}`);
    }
    // A management request fails at the server: it never reaches the hypervisor.
    const api = new ManagementClient(guest, ns, 'host1', 5000);
    await expect(api.call('destroy', { name: 'web2' })).rejects.toThrow(/permissions violation/i);
    expect((await t.api.call('info', { name: 'web2' })).state).toBe('running');
  });

  it("denies subscribing to another VM's traffic, its inbox or every VM's", async () => {
    const subs: [string, Subscription, { n: number; err?: string }][] = [];
    for (const s of [
      heartbeatSubject(ns, 'web2'),
      vnicRxSubject(ns, 'web2'),
      `${guestInboxPrefix(ns, 'web2')}.>`,
      anyHeartbeatSubject(ns),
      hardwareSubjects.all(ns, 'host1'),
      mgmtSubject(ns, 'host1', 'list'),
    ]) {
      const seen: { n: number; err?: string } = { n: 0 };
      subs.push([
        s,
        guest.subscribe(s, {
          // The client reports the denial through the callback too (an error, no message).
          callback: (err) => {
            if (err) seen.err = err.name;
            else seen.n++;
          },
        }),
        seen,
      ]);
    }
    for (const [s, sub] of subs) {
      const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r('open'), 5_000))]);
      expect(closed, s).toBeInstanceOf(Error);
      expect((closed as Error).name, s).toBe('PermissionViolationError');
      await waitFor(() => denied.includes(`subscription ${s}`), 5_000, `the server to deny subscribing to ${s}`);
    }
    // web2 keeps beating (the management connection hears it); none of it reached web1's user.
    let beats = 0;
    const watch = nc.subscribe(heartbeatSubject(ns, 'web2'), {
      callback: () => {
        beats++;
      },
    });
    await waitFor(() => beats >= 3, 10_000, "web2's heartbeats");
    watch.unsubscribe();
    for (const [s, , seen] of subs) {
      expect(seen.n, s).toBe(0);
      expect(seen.err, s).toBe('PermissionViolationError');
    }
  });

  it("answers a hypercall only on the guest's own inbox", async () => {
    const before = (await t.api.call('info', { name: 'web1' })).hypercalls.rejected;
    let leaked = 0;
    const victim = nc.subscribe(`${guestInboxPrefix(ns, 'web2')}.>`, {
      callback: () => {
        leaked++;
      },
    });
    await nc.flush();
    // Allowed to publish, but asks the hypervisor to answer into web2's inbox.
    guest.publish(hypercallSubject(ns, 'web1'), encode({ op: 'cpu', cycles: 1000 }), {
      reply: `${guestInboxPrefix(ns, 'web2')}.stolen.1`,
    });
    await waitFor(
      async () => (await t.api.call('info', { name: 'web1' })).hypercalls.rejected > before,
      10_000,
      'the hypervisor to refuse the hypercall',
    );
    await nc.flush();
    victim.unsubscribe();
    expect(leaked).toBe(0);
  });

  it('boots the real guests with users the hypervisor minted for them, and they serve', async () => {
    for (const vm of ['web1', 'web2']) {
      const info = await t.api.call('info', { name: vm });
      // The guest's process environment holds its own user and no other secret.
      const env = Object.fromEntries(
        fs
          .readFileSync(`/proc/${info.pid}/environ`, 'utf8')
          .split('\0')
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      expect(env['VMSIM_NATS_SIGNER_FILE']).toBeUndefined();
      expect(env['NATS_CREDS']).toBeUndefined();
      const claims = decodeJwt<User>(env['NATS_JWT']!);
      expect(claims.nats.pub?.allow).toEqual(guestPermissions(ns, vm).publish);
      expect(claims.nats.sub?.allow).toEqual(guestPermissions(ns, vm).subscribe);
      expect(claims.nats.issuer_account).toBe(t.nats.signer.account);
      const m = await nc.request(
        ingressSubject(ns, 'host1', vm),
        encode({ app: 'web', op: 'GET', path: '/', bytes: 200 }),
        { timeout: 30_000 },
      );
      const reply = decode(m.data, IngressReply, 'ingress reply');
      expect(reply.ok, JSON.stringify(reply)).toBe(true);
    }
  });

  it("gives the management API its own user, confined to the stack's namespace", async () => {
    expect(t.stack.credsFile).not.toBeNull();
    const mgmt = await connect({ servers: t.nats.url, ...credsFileAuth(t.stack.credsFile!) });
    const errors: string[] = [];
    void (async () => {
      for await (const s of mgmt.status()) if (s.type === 'error') errors.push(String(s.error.message));
    })();
    try {
      const list = await new ManagementClient(mgmt, ns, 'host1', 10_000).call('list', {});
      expect(list.vms.map((v) => v.name).sort()).toEqual(['web1', 'web2']);
      mgmt.publish(mgmtSubject(namespace('elsewhere'), 'host1', 'list'), encode({}));
      await waitFor(
        () => errors.some((e) => /permissions violation/i.test(e)),
        5_000,
        'a denial outside the namespace',
      );
    } finally {
      await mgmt.close();
    }
    // A connection without credentials is refused.
    await expect(connect({ servers: t.nats.url, reconnect: false })).rejects.toThrow(/authorization/i);
  });
});
