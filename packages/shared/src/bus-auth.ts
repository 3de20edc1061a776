import fs from 'node:fs';
import { credsAuthenticator, jwtAuthenticator, type Authenticator } from '@nats-io/nats-core';
import { ErrorCode, VmsimError } from './errors.ts';

/** Bus credentials, in the shape the client's connect() takes them (spread it into the options). */
export interface BusAuth {
  authenticator: Authenticator;
}

/** A NATS user's creds (the JWT and its nkey seed, as `nsc` and `vmsim` write them). */
export function credsAuth(creds: string): BusAuth {
  if (!/BEGIN NATS USER JWT/.test(creds) || !/BEGIN USER NKEY SEED/.test(creds)) {
    throw new VmsimError(ErrorCode.CONFIG, 'NATS creds must hold a user JWT and a user nkey seed');
  }
  return { authenticator: credsAuthenticator(new TextEncoder().encode(creds)) };
}

/** A creds file; read now, so that a missing or unreadable file fails at start with its name. */
export function credsFileAuth(file: string): BusAuth {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new VmsimError(ErrorCode.CONFIG, `cannot read the NATS creds file ${file}: ${(e as Error).message}`);
  }
  try {
    return credsAuth(text);
  } catch (e) {
    throw new VmsimError(ErrorCode.CONFIG, `${file}: ${(e as Error).message}`);
  }
}

/**
 * The credentials a service finds in its environment: NATS_CREDS (a creds file), or NATS_JWT
 * with NATS_SEED (how the hypervisor hands a guest the user it minted for it); none: no auth.
 */
export function busAuthFromEnv(env: {
  NATS_CREDS?: string | undefined;
  NATS_JWT?: string | undefined;
  NATS_SEED?: string | undefined;
}): BusAuth | undefined {
  if (env.NATS_CREDS) return credsFileAuth(env.NATS_CREDS);
  if (env.NATS_JWT || env.NATS_SEED) {
    if (!env.NATS_JWT || !env.NATS_SEED) {
      throw new VmsimError(ErrorCode.CONFIG, 'NATS_JWT and NATS_SEED go together (a user JWT and its nkey seed)');
    }
    return { authenticator: jwtAuthenticator(env.NATS_JWT, new TextEncoder().encode(env.NATS_SEED)) };
  }
  return undefined;
}
