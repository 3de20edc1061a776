import fs from 'node:fs';
import path from 'node:path';
import { credsFileAuth, type BusAuth } from '@vmsim/shared';
import {
  AUTH_FILES,
  SERVICE_ROLES,
  readSigner,
  writeAuthDir,
  writeSecret,
  writeServiceCreds,
  type NatsSigner,
} from '@vmsim/hypervisor';

/**
 * A stack's bus credentials, under `<home>/auth`: each service its own user (creds file,
 * mode 600), the hypervisor also the account signing key that mints its guests' users.
 */
export interface StackAuth {
  dir: string;
  /** The nats-server config with the auth (only when the stack starts its own server). */
  serverConfig: string | null;
  signerFile: string;
  /** The management API's creds: the CLI, `vmsim run`, tests. */
  managementCreds: string;
  /** The creds for a standalone client-gen. */
  clientGenCreds: string;
  /** What each service finds in its environment. */
  env: { hostAgent: Record<string, string>; hypervisor: Record<string, string> };
  /** The management API's credentials, to spread into connect(). */
  cli: BusAuth;
}

/**
 * Generates a stack's auth: a new operator and accounts with the server's config when the
 * stack starts its own nats-server; otherwise users minted with the signer of the server it
 * is given (option, or VMSIM_NATS_SIGNER_FILE). Undefined: a server without auth.
 */
export async function prepareStackAuth(o: {
  home: string;
  ns: string;
  host: string;
  ownServer: boolean;
  signer?: NatsSigner | undefined;
  env?: Record<string, string | undefined>;
}): Promise<StackAuth | undefined> {
  // Absolute: the context keeps the CLI's creds path for commands run from anywhere.
  const dir = path.resolve(o.home, 'auth');
  let serverConfig: string | null = null;
  let signerFile: string;
  let creds: Record<string, string>;
  if (o.ownServer) {
    const made = await writeAuthDir(dir, { ns: o.ns, host: o.host });
    serverConfig = made.serverConfig;
    signerFile = made.signerFile;
    creds = made.creds;
  } else {
    const envFile = (o.env ?? process.env)['VMSIM_NATS_SIGNER_FILE'];
    const signer = o.signer ?? (envFile ? readSigner(envFile) : undefined);
    if (!signer) return undefined;
    signerFile = path.join(dir, AUTH_FILES.signer);
    writeSecret(signerFile, JSON.stringify(signer, null, 2));
    creds = await writeServiceCreds(dir, signer, { ns: o.ns, host: o.host });
  }
  const managementCreds = creds['management']!;
  return {
    dir,
    serverConfig,
    signerFile,
    managementCreds,
    clientGenCreds: creds['client-gen']!,
    env: {
      hostAgent: { NATS_CREDS: creds['host-agent']! },
      hypervisor: { NATS_CREDS: creds['hypervisor']!, VMSIM_NATS_SIGNER_FILE: signerFile },
    },
    cli: credsFileAuth(managementCreds),
  };
}

/**
 * The credentials a command that attaches to a running stack connects with: the stack's own
 * management creds (its context), else NATS_CREDS; none: a server without auth.
 */
export function attachAuth(
  credsFile: string | null | undefined,
  env: Record<string, string | undefined> = process.env,
): BusAuth | undefined {
  const file = credsFile ?? env['NATS_CREDS'];
  return file ? credsFileAuth(file) : undefined;
}

/**
 * `vmsim nats-auth <dir>`: a server config and every service's creds for a stack started
 * elsewhere (docker compose's init service). What is there already is kept, so a second
 * `docker compose up` does not change the users of a server that runs.
 */
export async function writeNatsAuth(
  dir: string,
  where: { ns: string; host: string },
  out: (line: string) => void,
): Promise<void> {
  const wanted = [AUTH_FILES.serverConfig, AUTH_FILES.signer, ...SERVICE_ROLES.map((r) => AUTH_FILES.creds(r))].map(
    (f) => path.join(dir, f),
  );
  if (wanted.every((f) => fs.existsSync(f))) {
    out(`nats-auth: ${dir} already holds a server config and creds; kept`);
    return;
  }
  const made = await writeAuthDir(dir, where);
  out(
    `nats-auth: wrote ${path.relative(process.cwd(), made.serverConfig) || made.serverConfig} and the creds of ${SERVICE_ROLES.join(', ')} (namespace ${where.ns}, host ${where.host})`,
  );
}
