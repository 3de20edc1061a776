import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { credsAuth, type BusAuth, type NatsConnection } from '@vmsim/shared';
import { killChild, startNatsServer } from '@vmsim/cli';
import {
  createNatsAuthority,
  formatCreds,
  mintUser,
  natsServerAuthConfig,
  writeServiceCreds,
  type NatsSigner,
} from '@vmsim/hypervisor';

export interface TestNats {
  url: string;
  /** The test's own credentials: a user of the vmsim account that may use every subject. */
  auth: BusAuth;
  /** The account signing key: a stack on this server mints its services' and guests' users with it. */
  signer: NatsSigner;
  kind: 'container' | 'binary';
  stop(): Promise<void>;
  /** The server's pid (binary only), for faults that hit it. */
  pid(): number | null;
  /**
   * Stops the server (`signal`, SIGTERM by default), leaves it down for `downMs` (an outage of
   * that length), and starts it on the same port with the same store (binary only).
   */
  restart(signal?: NodeJS.Signals, downMs?: number): Promise<void>;
}

/** A client connection to the suite's server, with its credentials. */
export function connectTo(nats: TestNats): Promise<NatsConnection> {
  return connect({ servers: nats.url, ...nats.auth });
}

/** Creds files (mode 600) for each trusted service of one namespace and host on the suite's server. */
export function serviceCreds(
  nats: TestNats,
  dir: string,
  where: { ns: string; host: string },
): Promise<Record<'host-agent' | 'hypervisor' | 'management' | 'client-gen', string>> {
  return writeServiceCreds(dir, nats.signer, where);
}

/**
 * The server's auth (always on, as in every deployment): a new operator and account per
 * server, and the test's own user.
 */
async function testAuth(): Promise<{ config: string; signer: NatsSigner; auth: BusAuth }> {
  const authority = await createNatsAuthority();
  const admin = await mintUser(authority.signer, 'test', { publish: ['>'], subscribe: ['>'] });
  return {
    config: natsServerAuthConfig(authority),
    signer: authority.signer,
    auth: credsAuth(formatCreds(admin)),
  };
}

/** The one place that pins the NATS image the tests run (compose uses the same variable). */
export const NATS_IMAGE = process.env['NATS_IMAGE'] ?? 'nats:2.14';

/** Whether a Docker engine answers (`docker version` reaches a server). */
export function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'pipe', timeout: 3000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A NATS server of this test suite's own, with JWT auth on: a container (testcontainers)
 * when a Docker engine answers (or VMSIM_TEST_NATS=container), otherwise a nats-server
 * binary on a port the kernel picks. VMSIM_TEST_NATS=binary forces the binary.
 */
export async function startTestNats(): Promise<TestNats> {
  const want = process.env['VMSIM_TEST_NATS'] ?? 'auto';
  const { config, signer, auth } = await testAuth();
  if (want === 'container' || (want === 'auto' && dockerAnswers())) {
    process.env['TESTCONTAINERS_RYUK_DISABLED'] ??= 'true';
    const { GenericContainer, Wait } = await import('testcontainers');
    // The official image runs nats-server as its entry point: only its arguments change.
    const c = await new GenericContainer(NATS_IMAGE)
      .withCopyContentToContainer([{ content: config, target: '/etc/vmsim/nats-auth.conf' }])
      .withCommand(['-c', '/etc/vmsim/nats-auth.conf', '-js'])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    const url = `nats://${c.getHost()}:${c.getMappedPort(4222)}`;
    return {
      url,
      auth,
      signer,
      kind: 'container',
      stop: async () => void (await c.stop()),
      pid: () => null,
      restart: () => Promise.reject(new Error('restarting a NATS container on the same port is not supported')),
    };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-nats-'));
  const confFile = path.join(dir, 'nats-auth.conf');
  fs.writeFileSync(confFile, config);
  const natsOpts = {
    storeDir: path.join(dir, 'js'),
    logFile: path.join(dir, 'nats.log'),
    extraArgs: ['-c', confFile],
  };
  let s = await startNatsServer(natsOpts);
  return {
    url: s.url,
    auth,
    signer,
    kind: 'binary',
    stop: async () => {
      await s.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    pid: () => s.proc.pid ?? null,
    restart: async (signal = 'SIGTERM', downMs = 0) => {
      await killChild(s.proc, signal);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      s = await startNatsServer({ ...natsOpts, port: s.port });
    },
  };
}

/** A namespace no other test or run uses. */
export function testNamespace(): string {
  return `t${process.pid}x${Math.random().toString(36).slice(2, 8)}`;
}

export function tempHome(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-home-'));
}
