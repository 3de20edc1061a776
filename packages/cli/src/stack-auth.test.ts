import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decode, type User } from '@nats-io/jwt';
import { describe, expect, it } from 'vitest';
import { createNatsAuthority, readSigner } from '@vmsim/hypervisor';
import { managementPermissions, namespace } from '@vmsim/shared';
import { attachAuth, prepareStackAuth, writeNatsAuth } from './stack-auth.ts';

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-auth-'));
const mode = (f: string): number => fs.statSync(f).mode & 0o777;
const jwtOf = (creds: string): string => fs.readFileSync(creds, 'utf8').split('\n')[1]!;

describe('stack auth', () => {
  it("writes a stack's own server config, signer and per-service creds, secrets owner-only", async () => {
    const home = tmp();
    const a = (await prepareStackAuth({ home, ns: 'vmsim', host: 'host1', ownServer: true }))!;
    expect(fs.readFileSync(a.serverConfig!, 'utf8')).toMatch(/resolver: MEMORY/);
    for (const f of [a.signerFile, a.managementCreds, a.clientGenCreds, a.env.hostAgent['NATS_CREDS']!]) {
      expect(mode(f), f).toBe(0o600);
    }
    expect(a.env.hypervisor['VMSIM_NATS_SIGNER_FILE']).toBe(a.signerFile);
    // The host-agent gets no signer: only the hypervisor mints.
    expect(a.env.hostAgent['VMSIM_NATS_SIGNER_FILE']).toBeUndefined();
    const mgmt = decode<User>(jwtOf(a.managementCreds));
    expect(mgmt.nats.pub?.allow).toEqual(managementPermissions(namespace('vmsim')).publish);
    expect(mgmt.nats.issuer_account).toBe(readSigner(a.signerFile).account);
  });

  it("mints users with an external server's signer, and runs without auth when there is none", async () => {
    const authority = await createNatsAuthority();
    const a = (await prepareStackAuth({
      home: tmp(),
      ns: 'vmsim.t1',
      host: 'h2',
      ownServer: false,
      signer: authority.signer,
    }))!;
    expect(a.serverConfig).toBeNull();
    expect(decode<User>(jwtOf(a.env.hostAgent['NATS_CREDS']!)).nats.issuer_account).toBe(authority.account);
    expect(await prepareStackAuth({ home: tmp(), ns: 'vmsim', host: 'h', ownServer: false, env: {} })).toBeUndefined();
  });

  it('keeps what `vmsim nats-auth` wrote before', async () => {
    const dir = tmp();
    const lines: string[] = [];
    await writeNatsAuth(dir, { ns: 'vmsim', host: 'host1' }, (l) => lines.push(l));
    const conf = fs.readFileSync(path.join(dir, 'nats-auth.conf'), 'utf8');
    await writeNatsAuth(dir, { ns: 'vmsim', host: 'host1' }, (l) => lines.push(l));
    expect(fs.readFileSync(path.join(dir, 'nats-auth.conf'), 'utf8')).toBe(conf);
    expect(lines[1]).toMatch(/kept/);
  });

  it('finds the CLI creds in the context, then NATS_CREDS, and names a missing file', () => {
    expect(attachAuth(null, {})).toBeUndefined();
    expect(() => attachAuth(null, { NATS_CREDS: '/nonexistent.creds' })).toThrow(/nonexistent\.creds/);
    expect(() => attachAuth('/ctx.creds', { NATS_CREDS: '/env.creds' })).toThrow(/ctx\.creds/);
  });
});
