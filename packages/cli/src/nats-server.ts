import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, VmsimError } from '@vmsim/shared';
import { killChild } from './launch.ts';

export const NATS_INSTALL_HELP =
  'nats-server was not found on PATH (nor in /usr/sbin or /usr/local/bin). Install it ' +
  '(Debian/Ubuntu: `apt-get install nats-server`; macOS: `brew install nats-server`; ' +
  'or a release binary from the NATS project), point NATS_URL at a running server, ' +
  'or run the whole stack with `docker compose up`.';

/** The nats-server binary to run: NATS_SERVER_BIN, then PATH, then where distributions put it. */
export function findNatsServer(env: Record<string, string | undefined> = process.env): string {
  const explicit = env['NATS_SERVER_BIN'];
  if (explicit) {
    try {
      fs.accessSync(explicit, fs.constants.X_OK);
      return explicit;
    } catch {
      throw new VmsimError(
        ErrorCode.CONFIG,
        `NATS_SERVER_BIN=${explicit} is not an executable file. ${NATS_INSTALL_HELP}`,
      );
    }
  }
  const dirs = [...(env['PATH'] ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/bin', '/usr/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, 'nats-server');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  throw new VmsimError(ErrorCode.CONFIG, NATS_INSTALL_HELP);
}

export interface StartedNats {
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts a nats-server with JetStream on a port the kernel picks (-p -1) and reads the port
 * it got from its log file, so parallel runs never race for a port. The server logs to the
 * file, not to a pipe, so it may outlive the command that started it (`vmsim up`).
 */
export async function startNatsServer(opts: {
  storeDir: string;
  logFile: string;
  detached?: boolean;
  timeoutMs?: number;
  extraArgs?: string[];
  /** A fixed port (a restart on the port the clients know); its log is appended to, not truncated. */
  port?: number;
}): Promise<StartedNats> {
  const bin = findNatsServer();
  fs.mkdirSync(opts.storeDir, { recursive: true });
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  if (opts.port === undefined) fs.writeFileSync(opts.logFile, '');
  else fs.appendFileSync(opts.logFile, '');
  // Only what this server writes counts when looking for its port.
  const logFrom = fs.statSync(opts.logFile).size;
  const args = [
    '-a',
    '127.0.0.1',
    '-p',
    String(opts.port ?? -1),
    '-js',
    '-sd',
    opts.storeDir,
    '-l',
    opts.logFile,
    ...(opts.extraArgs ?? []),
  ];
  const proc = spawn(bin, args, { stdio: 'ignore', detached: opts.detached ?? false });
  let exited: string | undefined;
  proc.once('exit', (code, signal) => (exited = `exited (code ${code}, signal ${signal})`));
  proc.once('error', (e) => (exited = `could not run ${bin}: ${e.message}`));
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let port: number | undefined;
  while (port === undefined) {
    const text = fs.readFileSync(opts.logFile).subarray(logFrom).toString('utf8');
    const m = /Listening for client connections on [^\s]*:(\d+)/.exec(text);
    if (m) port = Number(m[1]);
    else if (exited) throw new VmsimError(ErrorCode.CONFIG, `nats-server ${exited}: ${text.slice(-500)}`);
    else if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new VmsimError(ErrorCode.TIMEOUT, `nats-server did not start in time: ${text.slice(-500)}`);
    } else await new Promise((r) => setTimeout(r, 20));
  }
  if (opts.detached) proc.unref();
  return { url: `nats://127.0.0.1:${port}`, port, proc, stop: () => stopProcess(proc) };
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
export function stopProcess(proc: ChildProcess, graceMs = 10_000): Promise<void> {
  return killChild(proc, 'SIGTERM', graceMs);
}
