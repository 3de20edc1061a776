import { decode, parseCreds, type Account, type Operator, type User } from '@nats-io/jwt';
import { fromPublic, fromSeed } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import { guestPermissions, namespace, servicePermissions } from '@vmsim/shared';
import { NKey } from './nkey.ts';
import {
  GuestCredentials,
  createNatsAuthority,
  formatCreds,
  mintUser,
  natsServerAuthConfig,
  type NatsAuthority,
} from './nats-auth.ts';

const te = new TextEncoder();

describe('NKey (native ed25519 in the nkeys text form)', () => {
  it('gives the public key and signatures the nkeys package gives for the same seed', () => {
    for (const role of ['operator', 'account', 'user'] as const) {
      const k = NKey.create(role);
      const ref = fromSeed(te.encode(k.seed()));
      expect(k.getPublicKey()).toBe(ref.getPublicKey());
      expect(k.getPublicKey()[0]).toBe({ operator: 'O', account: 'A', user: 'U' }[role]);
      expect(k.seed().slice(0, 2)).toBe({ operator: 'SO', account: 'SA', user: 'SU' }[role]);
      expect(new TextDecoder().decode(k.getPrivateKey())).toBe(new TextDecoder().decode(ref.getPrivateKey()));
      const data = te.encode(`payload for ${role}`);
      const sig = k.sign(data);
      // ed25519 is deterministic: the same signature, and each side verifies the other's.
      expect(Buffer.from(sig).toString('hex')).toBe(Buffer.from(ref.sign(data)).toString('hex'));
      expect(fromPublic(k.getPublicKey()).verify(data, sig)).toBe(true);
      expect(k.verify(data, ref.sign(data))).toBe(true);
      expect(k.verify(te.encode('other'), sig)).toBe(false);
    }
  });

  it('reads a seed back, and refuses a damaged one', () => {
    const k = NKey.create('account');
    const back = NKey.fromSeed(k.seed());
    expect(back.role).toBe('account');
    expect(back.getPublicKey()).toBe(k.getPublicKey());
    const flip = k.seed().slice(0, 10) + (k.seed()[10] === 'A' ? 'B' : 'A') + k.seed().slice(11);
    expect(() => NKey.fromSeed(flip)).toThrow(/checksum/);
    expect(() => NKey.fromSeed(k.getPublicKey())).toThrow(/not a seed/);
    expect(NKey.roleOfPublic(k.getPublicKey())).toBe('account');
  });
});

describe('NATS auth material', () => {
  let authority: NatsAuthority;
  const ns = namespace('vmsim.t1');

  it('creates an operator, a system account and an account with every limit unlimited', async () => {
    authority = await createNatsAuthority();
    const op = decode<Operator>(authority.operatorJwt);
    expect(op.nats.type).toBe('operator');
    expect(op.nats.system_account).toBe(authority.systemAccount);
    const acc = decode<Account>(authority.accountJwt);
    expect(acc.iss).toBe(op.sub);
    expect(acc.sub).toBe(authority.account);
    // A limit left out is 0: no connections, no subscriptions.
    for (const k of ['conn', 'subs', 'data', 'payload', 'imports', 'exports', 'leaf'] as const) {
      expect(acc.nats.limits?.[k], k).toBe(-1);
    }
    expect(acc.nats.limits?.disk_storage).toBe(-1);
    const signing = NKey.fromSeed(authority.signer.signingSeed).getPublicKey();
    expect(acc.nats.signing_keys).toEqual([signing]);
    const sys = decode<Account>(authority.systemAccountJwt);
    expect(sys.nats.limits?.conn).toBe(-1);
    const conf = natsServerAuthConfig(authority);
    expect(conf).toContain('resolver: MEMORY');
    expect(conf).toContain(`${authority.account}: ${authority.accountJwt}`);
    expect(conf).toContain(`${authority.systemAccount}: ${authority.systemAccountJwt}`);
    expect(conf).toContain(`system_account: ${authority.systemAccount}`);
    // Only public material goes into the server's config.
    expect(conf).not.toContain(authority.signer.signingSeed);
  });

  it("mints a guest a user of the account whose allow-lists are its subjects' builders'", async () => {
    const u = await mintUser(authority.signer, 'guest web1', guestPermissions(ns, 'web1'));
    const claims = decode<User>(u.jwt);
    expect(claims.nats.type).toBe('user');
    expect(claims.sub).toBe(NKey.fromSeed(u.seed).getPublicKey());
    expect(claims.sub[0]).toBe('U');
    expect(claims.iss).toBe(NKey.fromSeed(authority.signer.signingSeed).getPublicKey());
    expect(claims.nats.issuer_account).toBe(authority.account);
    expect(claims.nats.pub?.allow).toEqual(guestPermissions(ns, 'web1').publish);
    expect(claims.nats.sub?.allow).toEqual(guestPermissions(ns, 'web1').subscribe);
    expect(claims.nats.pub?.allow).toContain(`${ns}.vm.web1.hc`);
    expect(claims.nats.sub?.allow).toContain(`${ns}.vm.web1.inbox.>`);
    const creds = await parseCreds(te.encode(formatCreds(u)));
    expect(creds.jwt).toBe(u.jwt);
    expect(creds.key).toBe(u.seed);
    expect(creds.uc.sub).toBe(claims.sub);
    expect(creds.aid).toBe(authority.account);
  });

  it('signs service users with their role permissions', async () => {
    const u = await mintUser(authority.signer, 'host-agent', servicePermissions('host-agent', ns, 'host1'));
    const claims = decode<User>(u.jwt);
    expect(claims.nats.pub?.allow).toEqual(servicePermissions('host-agent', ns, 'host1').publish);
    expect(claims.nats.sub?.allow).toEqual(servicePermissions('host-agent', ns, 'host1').subscribe);
  });

  it('keeps one user per VM for its restarts, and mints fast', async () => {
    const g = new GuestCredentials(authority.signer, ns, 'host1');
    const a = await g.for('web1');
    expect(await g.for('web1')).toBe(a);
    const b = await g.for('web2');
    expect(b.seed).not.toBe(a.seed);
    expect(decode<User>(b.jwt).nats.pub?.allow).toEqual(guestPermissions(ns, 'web2').publish);
    g.forget('web1');
    expect((await g.for('web1')).seed).not.toBe(a.seed);
  });
});
