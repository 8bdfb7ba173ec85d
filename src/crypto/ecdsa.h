// ECDSA signature encodings: raw fixed-width r||s (JOSE, TPM) <-> DER ECDSA-Sig-Value (X.509,
// TLS). DER output is always minimal; DER input is parsed strictly (no trailing bytes, minimal).
#ifndef WIMSE_CRYPTO_ECDSA_H_
#define WIMSE_CRYPTO_ECDSA_H_

#include "util/bytes.h"
#include "util/result.h"

namespace wimse {

// Encodes r||s (each `raw.size()/2` bytes, big-endian) as a minimal DER ECDSA-Sig-Value.
Result<Bytes> EcdsaRawToDer(ByteView raw);
// Encodes separate r and s (big-endian, any length up to `field_size`) as minimal DER.
Result<Bytes> EcdsaRsToDer(ByteView r, ByteView s);
// Decodes a DER ECDSA-Sig-Value into r||s, each left-padded to `field_size` bytes. Rejects
// non-canonical DER, trailing data, and values wider than the field.
Result<Bytes> EcdsaDerToRaw(ByteView der, size_t field_size);
// Left-pads `r` and `s` (big-endian) to `field_size` bytes each and concatenates them.
Result<Bytes> EcdsaRsToRaw(ByteView r, ByteView s, size_t field_size);

}  // namespace wimse

#endif  // WIMSE_CRYPTO_ECDSA_H_
