import type { Logger } from './logger.ts';

type StopStep = { name: string; run: () => Promise<void> | void };

/**
 * A service's lifecycle. Stop steps run in reverse order of registration (the last thing
 * started stops first): stop intake, finish in-flight work, stop children, drain the
 * connection, flush logs. stop() is safe to call twice and closed() resolves after it.
 */
export class Lifecycle {
  private readonly steps: StopStep[] = [];
  private stopping: Promise<void> | undefined;
  private signalsInstalled = false;
  private resolveClosed!: () => void;
  private readonly closedPromise = new Promise<void>((r) => (this.resolveClosed = r));
  private readonly logger: Logger;
  private readonly stepTimeoutMs: number;

  private constructor(logger: Logger, stepTimeoutMs: number) {
    this.logger = logger;
    this.stepTimeoutMs = stepTimeoutMs;
  }

  static create(logger: Logger, opts: { stepTimeoutMs?: number } = {}): Lifecycle {
    return new Lifecycle(logger, opts.stepTimeoutMs ?? 10_000);
  }

  /** Registers a step to run on stop; steps run last-registered first. */
  onStop(name: string, run: () => Promise<void> | void): void {
    this.steps.push({ name, run });
  }

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  stop(reason: string): Promise<void> {
    this.stopping ??= this.runSteps(reason);
    return this.stopping;
  }

  closed(): Promise<void> {
    return this.closedPromise;
  }

  /** SIGINT/SIGTERM stop the service once; a second signal exits at once. */
  installSignalHandlers(exit: (code: number) => void = (c) => process.exit(c)): void {
    if (this.signalsInstalled) return;
    this.signalsInstalled = true;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.stopping) {
        this.logger.warn({ signal }, 'second signal: exiting now');
        exit(1);
        return;
      }
      void this.stop(`signal ${signal}`).then(() => exit(0));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }

  private async runSteps(reason: string): Promise<void> {
    this.logger.info({ reason }, 'stopping');
    for (const step of [...this.steps].reverse()) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(step.run),
          new Promise<void>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${this.stepTimeoutMs} ms`)), this.stepTimeoutMs);
            timer.unref();
          }),
        ]);
      } catch (e) {
        this.logger.error({ step: step.name, err: e }, 'stop step failed');
      } finally {
        clearTimeout(timer);
      }
    }
    this.logger.info({ reason }, 'stopped');
    this.logger.flush?.();
    this.resolveClosed();
  }
}
