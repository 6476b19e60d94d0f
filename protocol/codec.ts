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

/** Limits applied when decoding an untrusted payload. */
export interface DecodeLimits {
  /** Largest payload accepted, in bytes. Default {@link DEFAULT_DECODE_LIMITS}.maxBytes. */
  maxBytes: number;
  /** Deepest nesting of arrays and maps; the top-level value is depth 1. */
  maxDepth: number;
  /** Most array elements plus map entries in the whole payload. */
  maxItems: number;
}

/** 8 MiB: above the 1 MiB inputs the gateway accepts, below nats-server's 64 MiB hard cap. */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxBytes: 8 * 1024 * 1024,
  maxDepth: 32,
  maxItems: 1_000_000,
});

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
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // pending[d] = values still to read in the container open at depth d (index 0: the top level).
  const pending: number[] = [1];
  let pos = 0;
  let items = 0;

  const need = (n: number): void => {
    if (pos + n > size) throw new PayloadError(`payload is truncated at byte ${pos}`);
  };
  const skip = (n: number): void => {
    need(n);
    pos += n;
  };
  const open = (count: number): void => {
    // Each item takes at least one byte: a declared count past the end is a lie, caught here
    // before anything is allocated for it.
    if (count > size - pos) throw new PayloadError(`payload declares ${count} items past its end`);
    items += count;
    if (items > limits.maxItems) {
      throw new PayloadError(`payload has more than ${limits.maxItems} array or map items`);
    }
    if (count === 0) return;
    if (pending.length >= limits.maxDepth) {
      throw new PayloadError(`payload nests deeper than ${limits.maxDepth} levels`);
    }
    pending.push(count);
  };

  while (pending.length > 0) {
    const top = pending.length - 1;
    if (pending[top] === 0) {
      pending.pop();
      continue;
    }
    pending[top]! -= 1;
    need(1);
    const b = view.getUint8(pos++);
    if (b <= 0x7f || b >= 0xe0) continue; // fixint
    if (b <= 0x8f) open((b & 0x0f) * 2);
    else if (b <= 0x9f) open(b & 0x0f);
    else if (b <= 0xbf) skip(b & 0x1f);
    else {
      switch (b) {
        case 0xc0:
        case 0xc2:
        case 0xc3:
          break;
        case 0xc4:
        case 0xd9:
          need(1);
          skip(1 + view.getUint8(pos));
          break;
        case 0xc5:
        case 0xda:
          need(2);
          skip(2 + view.getUint16(pos));
          break;
        case 0xc6:
        case 0xdb:
          need(4);
          skip(4 + view.getUint32(pos));
          break;
        case 0xca:
          skip(4);
          break;
        case 0xcb:
          skip(8);
          break;
        case 0xcc:
        case 0xd0:
          skip(1);
          break;
        case 0xcd:
        case 0xd1:
          skip(2);
          break;
        case 0xce:
        case 0xd2:
          skip(4);
          break;
        case 0xcf:
        case 0xd3:
          skip(8);
          break;
        case 0xdc:
          need(2);
          pos += 2;
          open(view.getUint16(pos - 2));
          break;
        case 0xdd:
          need(4);
          pos += 4;
          open(view.getUint32(pos - 4));
          break;
        case 0xde:
          need(2);
          pos += 2;
          open(view.getUint16(pos - 2) * 2);
          break;
        case 0xdf:
          need(4);
          pos += 4;
          open(view.getUint32(pos - 4) * 2);
          break;
        default:
          // 0xc1 is never used; 0xc7-0xc9 and 0xd4-0xd8 are extension types, which Vigil's wire
          // does not carry (timestamps travel as epoch milliseconds).
          throw new PayloadError(`payload uses unsupported MessagePack type 0x${b.toString(16)}`);
      }
    }
  }
  if (pos !== size) throw new PayloadError(`payload has ${size - pos} trailing bytes`);
}
