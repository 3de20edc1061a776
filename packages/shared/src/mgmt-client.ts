import type { NatsConnection } from '@nats-io/nats-core';
import type { z } from 'zod';
import { call } from './bus.ts';
import type { Namespace } from './subjects.ts';
import { MgmtResults, mgmtSubject, type MgmtOp, type MgmtRequest, type MgmtResult } from './protocol/mgmt.ts';

/** A typed client of one hypervisor's management API (what the CLI and tests use). */
export class ManagementClient {
  private readonly nc: NatsConnection;
  private readonly ns: Namespace;
  private readonly host: string;
  private readonly timeoutMs: number;

  constructor(nc: NatsConnection, ns: Namespace, host: string, timeoutMs = 10_000) {
    this.nc = nc;
    this.ns = ns;
    this.host = host;
    this.timeoutMs = timeoutMs;
  }

  call<Op extends MgmtOp>(op: Op, request: MgmtRequest<Op>): Promise<MgmtResult<Op>> {
    const schema = MgmtResults[op] as unknown as z.ZodType<MgmtResult<Op>>;
    return call(this.nc, mgmtSubject(this.ns, this.host, op), request, schema, this.timeoutMs);
  }
}
