// src/protocol: QEMU-compatible migration stream codec (savevm framing, "ram" v4 records, return path)
// and the 2012 seed's page-request protocol. Pure: no I/O, no userfaultfd.
export * from './constants.js';
export * from './errors.js';
export * from './types.js';
export { StreamDecoder } from './stream-decoder.js';
export { RamRecordDecoder } from './ram-decoder.js';
export { RamRecordEncoder } from './ram-encoder.js';
export { StreamEncoder, type ConfigurationOptions, type CommandSpec } from './stream-encoder.js';
export {
  ReturnPathDecoder,
  encodeReturnPath,
  encodeReturnPathShut,
  encodeReturnPathPong,
  encodeReturnPathReqPages,
  encodeReturnPathRecvBitmap,
  encodeReturnPathResumeAck,
  encodeReturnPathSwitchoverAck,
  recvBitmapBytes,
} from './return-path.js';
export { UmemRequestDecoder, UmemRequestEncoder, encodeUmemRequest, encodeUmemRequests } from './umem-requests.js';
export { xbzrleEncode, xbzrleDecode, xbzrleValidate } from './xbzrle.js';
export { compressPage, inflatePage, compressBound } from './compress.js';
export { RamImage, applyRamRecord, type RamImageOptions, type RamRecordSink } from './ram-image.js';
export { vmDescriptionSectionSizes, deviceSizeLookup } from './vmdesc.js';
