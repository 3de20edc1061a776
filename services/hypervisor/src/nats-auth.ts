import fs from 'node:fs';
import path from 'node:path';
import { encodeAccount, encodeOperator, encodeUser, fmtCreds, type OperatorLimits } from '@nats-io/jwt';
import { z } from 'zod';
import {
  ErrorCode,
  VmsimError,
  guestPermissions,
  namespace,
  servicePermissions,
  validate,
  type BusPermissions,
  type BusRole,
  type Namespace,
} from '@vmsim/shared';
import { NKey } from './nkey.ts';

/**
 * NATS decentralized auth for a vmsim bus: an operator, a system account and one account for
 * vmsim, served to nats-server from its config (resolver MEMORY with the account JWTs
 * preloaded). Users are JWTs signed by the account's signing key with allow-lists, so the
 * hypervisor, which holds that key, mints a guest its user when the guest starts, without
 * touching the server. The operator's and the accounts' own seeds are thrown away once
 * their JWTs are signed: the signing key is the only secret that outlives setup.
 */

/** What may mint users: the account's public key and its signing key's seed (the hypervisor's secret). */
export const NatsSigner = z.object({
  account: z.string().regex(/^A[A-Z2-7]{55}$/, 'an account public key (A…)'),
  signingSeed: z.string().regex(/^SA[A-Z2-7]{56}$/, "an account signing key's seed (SA…)"),
});
export type NatsSigner = z.infer<typeof NatsSigner>;

/** Everything a nats-server needs to run with auth on, and the key that mints its users. */
export interface NatsAuthority {
  operatorJwt: string;
  systemAccount: string;
  systemAccountJwt: string;
  account: string;
  accountJwt: string;
  signer: NatsSigner;
}

/** A user: its JWT and its nkey seed (a connection proves the seed by signing the server's nonce). */
export interface MintedUser {
  name: string;
  jwt: string;
  seed: string;
}

// An account's limits default to 0 when absent: 0 connections, 0 subscriptions. All unlimited.
const CORE_LIMITS: OperatorLimits = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
};
const JETSTREAM_LIMITS: OperatorLimits = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };

/** A new operator, system account and vmsim account (a few ms: every key is signed natively). */
export async function createNatsAuthority(): Promise<NatsAuthority> {
  const operator = NKey.create('operator');
  const sys = NKey.create('account');
  const acc = NKey.create('account');
  const signing = NKey.create('account');
  const operatorJwt = await encodeOperator('vmsim', operator, { system_account: sys.getPublicKey() });
  const systemAccountJwt = await encodeAccount('SYS', sys, { limits: CORE_LIMITS }, { signer: operator });
  const accountJwt = await encodeAccount(
    'VMSIM',
    acc,
    { limits: { ...CORE_LIMITS, ...JETSTREAM_LIMITS }, signing_keys: [signing.getPublicKey()] },
    { signer: operator },
  );
  return {
    operatorJwt,
    systemAccount: sys.getPublicKey(),
    systemAccountJwt,
    account: acc.getPublicKey(),
    accountJwt,
    signer: { account: acc.getPublicKey(), signingSeed: signing.seed() },
  };
}

/** The auth part of a nats-server config (listen address, JetStream and so on stay on its command line). */
export function natsServerAuthConfig(a: NatsAuthority): string {
  return [
    '# vmsim: NATS decentralized auth (generated; users are JWTs signed by the VMSIM account).',
    `operator: ${a.operatorJwt}`,
    `system_account: ${a.systemAccount}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${a.systemAccount}: ${a.systemAccountJwt}`,
    `  ${a.account}: ${a.accountJwt}`,
    '}',
    '',
  ].join('\n');
}

/** Signs a user of the account with these allow-lists (everything else is denied). */
export async function mintUser(signer: NatsSigner, name: string, perms: BusPermissions): Promise<MintedUser> {
  const user = NKey.create('user');
  const key = NKey.fromSeed(signer.signingSeed);
  const jwt = await encodeUser(
    name,
    user,
    signer.account,
    { pub: { allow: perms.publish }, sub: { allow: perms.subscribe } },
    { signer: key },
  );
  return { name, jwt, seed: user.seed() };
}

/** The user in a .creds file (the layout nats tools read: the JWT, then the seed). */
export function formatCreds(u: MintedUser): string {
  return new TextDecoder().decode(fmtCreds(u.jwt, NKey.fromSeed(u.seed)));
}

/** Writes a secret readable by its owner only. */
export function writeSecret(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

export function readSigner(file: string): NatsSigner {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new VmsimError(ErrorCode.CONFIG, `cannot read the NATS signer ${file}: ${(e as Error).message}`);
  }
  return validate(raw, NatsSigner, `NATS signer ${file}`);
}

/**
 * Guests' users, one per VM, minted on first start and kept for its restarts (a minted user
 * is not revoked when its VM stops: only that VM's process ever gets it).
 */
export class GuestCredentials {
  private readonly users = new Map<string, Promise<MintedUser>>();
  private readonly signer: NatsSigner;
  private readonly ns: Namespace;
  private readonly host: string;

  constructor(signer: NatsSigner, ns: Namespace, host: string) {
    this.signer = signer;
    this.ns = ns;
    this.host = host;
  }

  for(vm: string): Promise<MintedUser> {
    let u = this.users.get(vm);
    if (!u) {
      u = mintUser(this.signer, `guest ${this.ns}/${this.host}/${vm}`, guestPermissions(this.ns, vm));
      // A failure is not kept: the next start tries again.
      u.catch(() => this.users.delete(vm));
      this.users.set(vm, u);
    }
    return u;
  }

  forget(vm: string): void {
    this.users.delete(vm);
  }
}

/** The files of a stack's auth directory. */
export const AUTH_FILES = {
  serverConfig: 'nats-auth.conf',
  signer: 'signer.json',
  creds: (role: Exclude<BusRole, 'guest'>) => `${role}.creds`,
} as const;

export const SERVICE_ROLES = [
  'host-agent',
  'hypervisor',
  'management',
  'client-gen',
] as const satisfies readonly Exclude<BusRole, 'guest'>[];

/**
 * Mints the trusted services' users of one namespace and host and writes their creds files
 * (mode 600) into `dir`; returns the files by role.
 */
export async function writeServiceCreds(
  dir: string,
  signer: NatsSigner,
  where: { ns: string; host: string },
): Promise<Record<(typeof SERVICE_ROLES)[number], string>> {
  const ns = namespace(where.ns);
  const out = {} as Record<(typeof SERVICE_ROLES)[number], string>;
  for (const role of SERVICE_ROLES) {
    const u = await mintUser(signer, `${role} ${ns}/${where.host}`, servicePermissions(role, ns, where.host));
    const file = path.join(dir, AUTH_FILES.creds(role));
    writeSecret(file, formatCreds(u));
    out[role] = file;
  }
  return out;
}

/**
 * A new authority and everything a deployment needs from it, written into `dir`: the server's
 * config, the signer (for the hypervisor only) and each service's creds.
 */
export async function writeAuthDir(
  dir: string,
  where: { ns: string; host: string },
): Promise<{ authority: NatsAuthority; serverConfig: string; signerFile: string; creds: Record<string, string> }> {
  const authority = await createNatsAuthority();
  fs.mkdirSync(dir, { recursive: true });
  const serverConfig = path.join(dir, AUTH_FILES.serverConfig);
  // The server's config holds only public JWTs.
  fs.writeFileSync(serverConfig, natsServerAuthConfig(authority), { mode: 0o644 });
  const signerFile = path.join(dir, AUTH_FILES.signer);
  writeSecret(signerFile, JSON.stringify(authority.signer, null, 2));
  const creds = await writeServiceCreds(dir, authority.signer, where);
  return { authority, serverConfig, signerFile, creds };
}
