/**
 * The one payload codec of the wire: MessagePack through msgpackr, with explicit limits.
 *
 * msgpackr trusts its input: a 30-byte payload can declare a four-billion-element array, and a few
 * kilobytes of nested arrays overflow the decoder's stack. So every payload from the network is
 * first walked by {@link scanMsgpack}, an iterative, allocation-free pass that checks the size,
 * nesting depth, element counts and declared lengths, and only then handed to msgpackr.
 */
import { Packr, Unpackr } from 'msgpackr';
import { PayloadError } from './errors.js';
import { WIRE_LIMITS, type WireLimits } from './limits.js';

/** Limits applied when decoding an untrusted payload: the wire's ({@link WIRE_LIMITS}). */
export type DecodeLimits = WireLimits;

/** The limits a payload is decoded with unless a caller narrows them: the wire's own. */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = WIRE_LIMITS;

// Records and structured clone are msgpackr extensions that other languages cannot read and that
// keep decoder state between messages; the wire stays plain MessagePack.
const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false });
const unpackr = new Unpackr({
  useRecords: false,
  structuredClone: false,
  mapsAsObjects: true,
  int64AsType: 'number',
});

/** Encodes a value as plain MessagePack. `undefined` object properties are omitted. */
export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/**
 * Decodes an untrusted MessagePack payload after checking it against `limits`.
 * @throws PayloadError when the payload is empty, too large, too deep, has too many items,
 *   declares lengths beyond its end, uses extension types, or has trailing bytes.
 */
export function decode(bytes: Uint8Array, limits: Partial<DecodeLimits> = {}): unknown {
  scanMsgpack(bytes, { ...DEFAULT_DECODE_LIMITS, ...limits });
  try {
    return unpackr.unpack(bytes);
  } catch (err) {
    throw new PayloadError(`payload is not valid MessagePack: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Walks one MessagePack value without building it, enforcing `limits`.
 * @throws PayloadError on the first violation.
 */
export function scanMsgpack(bytes: Uint8Array, limits: DecodeLimits): void {
  const size = bytes.byteLength;
  if (size === 0) throw new PayloadError('payload is empty');
  if (size > limits.maxBytes) {
    throw new PayloadError(`payload is ${size} bytes, more than the limit of ${limits.maxBytes}`);
  }
  new MsgpackScanner(bytes, limits).scan();
}

/** The state of one scan; a class so that its helpers are not closures made anew per payload. */
class MsgpackScanner {
  readonly #view: DataView;
  readonly #size: number;
  readonly #limits: DecodeLimits;
  /** pending[d]: values still to read in the container open at depth d (0: the top level). */
  readonly #pending: number[] = [1];
  #pos = 0;
  #items = 0;

  constructor(bytes: Uint8Array, limits: DecodeLimits) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#size = bytes.byteLength;
    this.#limits = limits;
  }

  scan(): void {
    const view = this.#view;
    const pending = this.#pending;
    while (pending.length > 0) {
      const top = pending.length - 1;
      if (pending[top] === 0) {
        pending.pop();
        continue;
      }
      pending[top]! -= 1;
      this.#need(1);
      const b = view.getUint8(this.#pos++);
      if (b <= 0x7f || b >= 0xe0) continue; // fixint
      if (b <= 0x8f) this.#open((b & 0x0f) * 2);
      else if (b <= 0x9f) this.#open(b & 0x0f);
      else if (b <= 0xbf) this.#skip(b & 0x1f);
      else this.#scanTyped(b);
    }
    if (this.#pos !== this.#size) {
      throw new PayloadError(`payload has ${this.#size - this.#pos} trailing bytes`);
    }
  }

  #scanTyped(b: number): void {
    const view = this.#view;
    switch (b) {
      case 0xc0:
      case 0xc2:
      case 0xc3:
        return;
      case 0xc4:
      case 0xd9:
        this.#need(1);
        return this.#skip(1 + view.getUint8(this.#pos));
      case 0xc5:
      case 0xda:
        this.#need(2);
        return this.#skip(2 + view.getUint16(this.#pos));
      case 0xc6:
      case 0xdb:
        this.#need(4);
        return this.#skip(4 + view.getUint32(this.#pos));
      case 0xcc:
      case 0xd0:
        return this.#skip(1);
      case 0xcd:
      case 0xd1:
        return this.#skip(2);
      case 0xca:
      case 0xce:
      case 0xd2:
        return this.#skip(4);
      case 0xcb:
      case 0xcf:
      case 0xd3:
        return this.#skip(8);
      case 0xdc:
        this.#need(2);
        this.#pos += 2;
        return this.#open(view.getUint16(this.#pos - 2));
      case 0xdd:
        this.#need(4);
        this.#pos += 4;
        return this.#open(view.getUint32(this.#pos - 4));
      case 0xde:
        this.#need(2);
        this.#pos += 2;
        return this.#open(view.getUint16(this.#pos - 2) * 2);
      case 0xdf:
        this.#need(4);
        this.#pos += 4;
        return this.#open(view.getUint32(this.#pos - 4) * 2);
      default:
        // 0xc1 is never used; 0xc7-0xc9 and 0xd4-0xd8 are extension types, which Vigil's wire
        // does not carry (timestamps travel as epoch milliseconds).
        throw new PayloadError(`payload uses unsupported MessagePack type 0x${b.toString(16)}`);
    }
  }

  #need(n: number): void {
    if (this.#pos + n > this.#size)
      throw new PayloadError(`payload is truncated at byte ${this.#pos}`);
  }

  #skip(n: number): void {
    this.#need(n);
    this.#pos += n;
  }

  #open(count: number): void {
    // Each item takes at least one byte: a declared count past the end is a lie, caught here
    // before anything is allocated for it.
    if (count > this.#size - this.#pos) {
      throw new PayloadError(`payload declares ${count} items past its end`);
    }
    this.#items += count;
    if (this.#items > this.#limits.maxItems) {
      throw new PayloadError(`payload has more than ${this.#limits.maxItems} array or map items`);
    }
    if (count === 0) return;
    if (this.#pending.length >= this.#limits.maxDepth) {
      throw new PayloadError(`payload nests deeper than ${this.#limits.maxDepth} levels`);
    }
    this.#pending.push(count);
  }
}
