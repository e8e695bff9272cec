// Feature and ioctl masks <-> names. Decoding never throws: bits this library does not know (a newer kernel)
// are kept as `unknown` so they survive a round trip (the 6.6 POISON bit broke bindings that rejected it).
import { FEATURE_NAMES, UFFD_FEATURES, UFFDIO_IOCTL_BITS, type FeatureName, type UffdIoctlName } from './abi.js';

export type { FeatureName, UffdIoctlName };

/** Every known feature bit ORed together. */
export const KNOWN_FEATURES_MASK: bigint = FEATURE_NAMES.reduce((m, n) => m | BigInt(UFFD_FEATURES[n]), 0n);

export interface DecodedMask<N extends string> {
  names: N[];
  /** Bits set in the mask that have no name here. */
  unknown: bigint;
}

export function isFeatureName(name: string): name is FeatureName {
  return Object.prototype.hasOwnProperty.call(UFFD_FEATURES, name);
}

/** 'MOVE' → 1n << 16n. Also accepts the full 'UFFD_FEATURE_MOVE' spelling. Throws on an unknown name. */
export function featureBit(name: FeatureName | string): bigint {
  const short = name.startsWith('UFFD_FEATURE_') ? name.slice('UFFD_FEATURE_'.length) : name;
  if (!isFeatureName(short)) throw new TypeError(`unknown userfaultfd feature '${name}' (known: ${FEATURE_NAMES.join(', ')})`);
  return BigInt(UFFD_FEATURES[short]);
}

/** Names → mask. A bigint passes through unchanged (so callers may request bits this library does not know). */
export function encodeFeatures(features: readonly (FeatureName | string)[] | bigint | number): bigint {
  if (typeof features === 'bigint') return features;
  if (typeof features === 'number') return BigInt(features);
  let mask = 0n;
  for (const f of features) mask |= featureBit(f);
  return mask;
}

export function decodeFeatures(mask: bigint | number): DecodedMask<FeatureName> {
  const m = BigInt(mask);
  const names = FEATURE_NAMES.filter((n) => (m & BigInt(UFFD_FEATURES[n])) !== 0n);
  return { names, unknown: m & ~KNOWN_FEATURES_MASK };
}

export function hasFeature(mask: bigint, name: FeatureName): boolean {
  return (mask & BigInt(UFFD_FEATURES[name])) !== 0n;
}

const IOCTL_NAMES = Object.keys(UFFDIO_IOCTL_BITS) as UffdIoctlName[];
const KNOWN_IOCTLS_MASK = IOCTL_NAMES.reduce((m, n) => m | (1n << BigInt(UFFDIO_IOCTL_BITS[n])), 0n);

/** Decode an ioctl mask (UFFDIO_API / UFFDIO_REGISTER `ioctls` field) into ioctl names. */
export function decodeIoctls(mask: bigint | number): DecodedMask<UffdIoctlName> {
  const m = BigInt(mask);
  const names = IOCTL_NAMES.filter((n) => (m & (1n << BigInt(UFFDIO_IOCTL_BITS[n]))) !== 0n);
  return { names, unknown: m & ~KNOWN_IOCTLS_MASK };
}

/** Does a REGISTER ioctl mask (a Number: all bits are < 64 and known ones < 2^53) allow this ioctl? */
export function ioctlAllowed(mask: number | bigint, name: UffdIoctlName): boolean {
  return (BigInt(mask) & (1n << BigInt(UFFDIO_IOCTL_BITS[name]))) !== 0n;
}
