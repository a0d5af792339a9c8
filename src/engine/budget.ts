/**
 * The memory budget of each login for queued results: the queue sizes of its
 * jobs whose results are not read yet (a queue may fill while nobody reads)
 * and the notices those jobs keep. A launch that would go beyond it fails
 * with 53200; a notice that would is dropped. Without it one login could
 * hold 16 sessions × 16 unread jobs × 256 MB queues of the server's memory.
 */
import { errors } from '../protocol/errors.js';
import type { Login } from '../workers/pool.js';

/** The budget's default: 256 MB per login. */
export const QUEUE_BYTES_PER_LOGIN = { default: 256 * 1024 * 1024, min: 4 * 1024 } as const;

/** What a job draws on: its login's share of the budget. */
export interface MemoryAccount {
  /** Takes `bytes` if they fit; false (nothing taken) if they do not. */
  take(bytes: number): boolean;
  give(bytes: number): void;
}

export class LoginBudgets {
  readonly #held = new Map<string, number>();

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < QUEUE_BYTES_PER_LOGIN.min) {
      throw new RangeError(`maxQueueBytesPerLogin must be a whole number, ${QUEUE_BYTES_PER_LOGIN.min} or more`);
    }
  }

  /** Bytes `login` holds now. */
  held(login: Login): number {
    return this.#held.get(login.key) ?? 0;
  }

  /** Bytes all logins hold now. */
  get total(): number {
    let bytes = 0;
    for (const held of this.#held.values()) bytes += held;
    return bytes;
  }

  /** `login`'s account. */
  account(login: Login): MemoryAccount {
    return {
      take: (bytes) => {
        const held = this.held(login);
        if (held + bytes > this.limit) return false;
        this.#held.set(login.key, held + bytes);
        return true;
      },
      give: (bytes) => {
        const left = this.held(login) - bytes;
        if (left > 0) this.#held.set(login.key, left);
        else this.#held.delete(login.key);
      },
    };
  }

  /** Takes `bytes` for a launch of `login`, or throws 53200 naming the login and the limit. */
  reserve(login: Login, bytes: number): MemoryAccount {
    const account = this.account(login);
    if (!account.take(bytes)) throw errors.memoryBudget(login.label, this.limit, this.held(login), bytes);
    return account;
  }
}
