/**
 * What can still be learned from a request an actor cannot decode (corrupted, truncated, over a
 * limit, or from a client that broke the contract): whose task it is, so that the task still ends
 * where its owner looks (`GET /v1/tasks/{id}`, the waiting caller) instead of vanishing into the
 * dead-letter stream.
 *
 * The task id is the request subject's last token (the gateway and the typed client put it
 * there, and the stream's dedup id is the same). The tenant, the reply subject and the creation
 * time are read from the envelope's top-level map by a tolerant reader that never decodes nested
 * values, so a payload that is too deep or malformed further in still gives up its owner.
 */
import { NAME_TOKEN, parseRequestSubject } from './subjects.js';

/** The owner of an unreadable request, as far as it could be recovered. */
export interface RecoveredRequest {
  /** The task id, from the subject. */
  taskId: string;
  /** The tenant, when the envelope's top level held a valid one. */
  tenant?: string;
  /** Where the caller waits, when the envelope named a reply subject for this very task. */
  replyTo?: string;
  /** When the task was accepted, epoch ms, when the envelope said. */
  createdAt?: number;
}

/** Top-level envelope fields worth reading, and what each must look like. */
const WANTED = new Set(['tenant', 'replyTo', 'createdAt']);

/**
 * The owner of the request published on `subject` with payload `bytes`; undefined when the
 * subject does not have the request layout, so carries no task id (a message that never came
 * from a gateway or client).
 */
export function recoverRequest(subject: string, bytes: Uint8Array): RecoveredRequest | undefined {
  const taskId = parseRequestSubject(subject)?.taskId;
  if (taskId === undefined) return undefined;
  const found = readTopLevel(bytes);
  const recovered: RecoveredRequest = { taskId };
  const { tenant, replyTo, createdAt } = found;
  if (typeof tenant === 'string' && NAME_TOKEN.test(tenant)) recovered.tenant = tenant;
  // Only a reply subject for this task: an unreadable payload must not steer the actor's
  // publishes elsewhere.
  if (
    typeof replyTo === 'string' &&
    /^vigil\.reply\.[a-z0-9_-]{1,64}\.[a-z2-7]{26}$/.test(replyTo)
  ) {
    if (replyTo.endsWith(`.${taskId}`)) recovered.replyTo = replyTo;
  }
  if (typeof createdAt === 'number' && Number.isSafeInteger(createdAt) && createdAt > 0) {
    recovered.createdAt = createdAt;
  }
  return recovered;
}

/**
 * The string and integer values of {@link WANTED} keys in the top-level map of `bytes`, as far as
 * the bytes can be read; nested values are skipped, never built.
 */
function readTopLevel(bytes: Uint8Array): Record<string, string | number> {
  const reader = new TolerantReader(bytes);
  const found: Record<string, string | number> = {};
  try {
    const entries = reader.mapHeader();
    for (let i = 0; i < entries; i += 1) {
      const key = reader.string();
      if (key !== undefined && WANTED.has(key)) {
        const value = reader.scalar();
        if (value !== undefined) {
          found[key] = value;
          continue;
        }
      }
      reader.skip();
    }
  } catch {
    // Truncated or malformed past this point: what was read so far is all there is.
  }
  return found;
}

/** Bytes after the type byte of the fixed-size types: numbers and fixext extensions. */
const FIXED_SIZES = new Map([
  [0xcc, 1],
  [0xcd, 2],
  [0xce, 4],
  [0xcf, 8],
  [0xd0, 1],
  [0xd1, 2],
  [0xd2, 4],
  [0xd3, 8],
  [0xca, 4],
  [0xcb, 8],
  [0xd4, 2],
  [0xd5, 3],
  [0xd6, 5],
  [0xd7, 9],
  [0xd8, 17],
]);

/** fixstr, str8, str16 or str32. */
function isStringType(b: number): boolean {
  return (b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb;
}

/** A bounds-checked MessagePack reader that throws a plain Error at the first malformed byte. */
class TolerantReader {
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  #pos = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** The entry count of a map header. */
  mapHeader(): number {
    const b = this.#u8();
    if (b >= 0x80 && b <= 0x8f) return b & 0x0f;
    if (b === 0xde) return this.#uint(2);
    if (b === 0xdf) return this.#uint(4);
    throw new Error('not a map');
  }

  /** A string value, or undefined (and the value skipped) for anything else. */
  string(): string | undefined {
    const length = this.#stringLength(this.#peek());
    if (length === undefined) {
      this.skip();
      return undefined;
    }
    const start = this.#pos;
    this.#need(length);
    this.#pos += length;
    return Buffer.from(this.#bytes.buffer, this.#bytes.byteOffset + start, length).toString('utf8');
  }

  /** A string or integer value; undefined, with the value left unread, for anything else. */
  scalar(): string | number | undefined {
    const b = this.#peek();
    if (isStringType(b)) return this.string();
    if (b <= 0x7f) return this.#u8();
    if (b === 0xcc || b === 0xcd || b === 0xce) {
      this.#pos += 1;
      return this.#uint(b === 0xcc ? 1 : b === 0xcd ? 2 : 4);
    }
    if (b === 0xcf) {
      this.#pos += 1;
      this.#need(8);
      const value = Number(this.#view.getBigUint64(this.#pos));
      this.#pos += 8;
      return value;
    }
    if (b === 0xcb) {
      this.#pos += 1;
      this.#need(8);
      const value = this.#view.getFloat64(this.#pos);
      this.#pos += 8;
      return value;
    }
    return undefined;
  }

  /** Skips one whole value, however deep, without recursion. */
  skip(): void {
    let pending = 1;
    while (pending > 0) {
      pending -= 1;
      pending += this.#skipOne();
    }
  }

  /** Skips one value's own bytes; returns how many values it contains (array and map items). */
  #skipOne(): number {
    const b = this.#u8();
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return 0;
    if (b <= 0x8f) return (b & 0x0f) * 2;
    if (b <= 0x9f) return b & 0x0f;
    if (b <= 0xbf) return this.#advance(b & 0x1f);
    const size = FIXED_SIZES.get(b);
    if (size !== undefined) return this.#advance(size);
    switch (b) {
      case 0xc4:
      case 0xd9:
        return this.#advance(this.#uint(1));
      case 0xc5:
      case 0xda:
        return this.#advance(this.#uint(2));
      case 0xc6:
      case 0xdb:
        return this.#advance(this.#uint(4));
      case 0xc7:
        return this.#advance(this.#uint(1) + 1);
      case 0xc8:
        return this.#advance(this.#uint(2) + 1);
      case 0xc9:
        return this.#advance(this.#uint(4) + 1);
      case 0xdc:
        return this.#items(this.#uint(2));
      case 0xdd:
        return this.#items(this.#uint(4));
      case 0xde:
        return this.#items(this.#uint(2) * 2);
      case 0xdf:
        return this.#items(this.#uint(4) * 2);
      default:
        throw new Error(`unknown type 0x${b.toString(16)}`);
    }
  }

  /** A declared item count, refused when the bytes left cannot hold it (one byte per item). */
  #items(count: number): number {
    if (count > this.#bytes.byteLength - this.#pos) throw new Error('declared items past the end');
    return count;
  }

  #stringLength(b: number): number | undefined {
    if (b >= 0xa0 && b <= 0xbf) {
      this.#pos += 1;
      return b & 0x1f;
    }
    if (b === 0xd9 || b === 0xda || b === 0xdb) {
      this.#pos += 1;
      return this.#uint(b === 0xd9 ? 1 : b === 0xda ? 2 : 4);
    }
    return undefined;
  }

  #advance(n: number): number {
    this.#need(n);
    this.#pos += n;
    return 0;
  }

  #peek(): number {
    this.#need(1);
    return this.#view.getUint8(this.#pos);
  }

  #u8(): number {
    const b = this.#peek();
    this.#pos += 1;
    return b;
  }

  #uint(size: 1 | 2 | 4): number {
    this.#need(size);
    const value =
      size === 1
        ? this.#view.getUint8(this.#pos)
        : size === 2
          ? this.#view.getUint16(this.#pos)
          : this.#view.getUint32(this.#pos);
    this.#pos += size;
    return value;
  }

  #need(n: number): void {
    if (this.#pos + n > this.#bytes.byteLength) throw new Error('truncated');
  }
}
