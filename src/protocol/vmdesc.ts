// Payload sizes of device sections computed from the VMDESCRIPTION JSON (QEMU records the bytes each
// field took when saving), usable as DecoderOptions.deviceSectionSize on a second pass, or to check
// the footer-scan result.
import type { DeviceSectionInfo } from './types.js';

interface VmsdField {
  size?: number;
  array_len?: number;
}
interface Vmsd {
  vmsd_name?: string;
  fields?: VmsdField[];
  subsections?: Vmsd[];
}
interface VmDevice extends Vmsd {
  name: string;
  instance_id: number;
}

function vmsdSize(v: Vmsd): number {
  let n = 0;
  for (const f of v.fields ?? []) n += (f.size ?? 0) * (f.array_len ?? 1);
  for (const s of v.subsections ?? []) {
    // On the wire: u8 0x05, u8 name length, name, be32 version_id, fields.
    n += 2 + Buffer.byteLength(s.vmsd_name ?? '', 'latin1') + 4 + vmsdSize(s);
  }
  return n;
}

/** Map "idstr/instanceId" → payload bytes for every device in the VM description. */
export function vmDescriptionSectionSizes(json: string): Map<string, number> {
  const out = new Map<string, number>();
  let doc: { devices?: VmDevice[] };
  try {
    doc = JSON.parse(json) as { devices?: VmDevice[] };
  } catch {
    return out;
  }
  for (const d of Array.isArray(doc.devices) ? doc.devices : []) {
    if (typeof d?.name === 'string') out.set(`${d.name}/${d.instance_id ?? 0}`, vmsdSize(d));
  }
  return out;
}

/** DecoderOptions.deviceSectionSize built from a size map (FULL sections only). */
export function deviceSizeLookup(sizes: ReadonlyMap<string, number>): (s: DeviceSectionInfo) => number | undefined {
  return (s) => (s.type === 'full' ? sizes.get(`${s.idstr}/${s.instanceId}`) : undefined);
}
