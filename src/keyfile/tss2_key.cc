#include "keyfile/tss2_key.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/ossl.h"
#include "keyfile/der.h"
#include "util/file.h"

namespace wimse {

namespace {

// id-tpmkey = 2.23.133.10.1; .3 loadable, .4 importable, .5 sealed (draft-bottomley-tpm2-keys).
constexpr uint8_t kOidLoadableKey[] = {0x67, 0x81, 0x05, 0x0a, 0x01, 0x03};
constexpr uint8_t kOidImportableKey[] = {0x67, 0x81, 0x05, 0x0a, 0x01, 0x04};
constexpr uint8_t kOidSealedData[] = {0x67, 0x81, 0x05, 0x0a, 0x01, 0x05};
constexpr const char kPemLabel[] = "TSS2 PRIVATE KEY";
constexpr size_t kMaxKeyFileSize = 16 * 1024;

bool Equals(ByteView a, const uint8_t* b, size_t n) {
  return a.size() == n && std::equal(a.begin(), a.end(), b);
}

Error KeyError(const std::string& msg) { return Error(Layer::kParse, "TSS2 key: " + msg); }

// A TPM2B blob in the file: normally with its 2-byte size prefix; accept the un-prefixed form
// some writers produced and add the prefix.
Result<Bytes> NormalizeTpm2b(ByteView blob, const char* what) {
  if (blob.size() >= 2 && ((static_cast<size_t>(blob[0]) << 8) | blob[1]) == blob.size() - 2) {
    return Bytes(blob.begin(), blob.end());
  }
  if (blob.empty() || blob.size() > 0xffff) {
    return KeyError(std::string(what) + " has an invalid size");
  }
  Bytes out{static_cast<uint8_t>(blob.size() >> 8), static_cast<uint8_t>(blob.size())};
  out.insert(out.end(), blob.begin(), blob.end());
  return out;
}

Result<bool> ParseBoolean(ByteView explicit_contents, const char* what) {
  der::Reader r(explicit_contents);
  WIMSE_ASSIGN_OR_RETURN(der::Element b, r.Next());
  if (b.tag != der::kBoolean || b.contents.size() != 1 || !r.empty()) {
    return KeyError(std::string(what) + " is not a BOOLEAN");
  }
  return b.contents[0] != 0;  // lenient: OpenSSL writers emit 0x01 for TRUE
}

}  // namespace

Result<Tss2KeyFile> ParseTss2KeyDer(ByteView data) {
  der::Reader outer(data);
  WIMSE_ASSIGN_OR_RETURN(der::Element seq, outer.Next());
  if (seq.tag != der::kSequence) return KeyError("not a SEQUENCE");
  if (!outer.empty()) return KeyError("trailing bytes after the key SEQUENCE");
  der::Reader r(seq.contents);
  WIMSE_ASSIGN_OR_RETURN(der::Element oid, r.Next());
  if (oid.tag != der::kOid) return KeyError("missing type OID");
  if (Equals(oid.contents, kOidImportableKey, sizeof(kOidImportableKey))) {
    return KeyError("importable keys (2.23.133.10.1.4) are not supported");
  }
  if (Equals(oid.contents, kOidSealedData, sizeof(kOidSealedData))) {
    return KeyError("sealed data (2.23.133.10.1.5) is not a key");
  }
  if (!Equals(oid.contents, kOidLoadableKey, sizeof(kOidLoadableKey))) {
    return KeyError("unknown type OID (expected 2.23.133.10.1.3, a loadable key)");
  }
  Tss2KeyFile key;
  key.empty_auth = false;  // absent emptyAuth means an auth value is required
  int last_optional = -1;
  while (!r.empty() && (r.PeekTag() & 0xe0) == 0xa0) {
    WIMSE_ASSIGN_OR_RETURN(der::Element opt, r.Next());
    // The optional fields [0]..[5] appear at most once each, in tag order (DER of a SEQUENCE
    // with OPTIONAL members): a second emptyAuth must not silently override the first.
    int number = opt.tag & 0x1f;
    if (number <= last_optional) {
      return KeyError("optional field [" + std::to_string(number) +
                      "] is repeated or out of order");
    }
    last_optional = number;
    switch (opt.tag) {
      case der::ContextTag(0): {
        WIMSE_ASSIGN_OR_RETURN(key.empty_auth, ParseBoolean(opt.contents, "emptyAuth"));
        key.empty_auth_present = true;
        break;
      }
      case der::ContextTag(1):
      case der::ContextTag(3):
        return KeyError("policy-bound keys are not supported (policy present)");
      case der::ContextTag(2):
        return KeyError("keys with an import secret are not supported");
      case der::ContextTag(4):
        break;  // description: informational
      case der::ContextTag(5): {
        WIMSE_ASSIGN_OR_RETURN(key.rsa_parent, ParseBoolean(opt.contents, "rsaParent"));
        break;
      }
      default:
        return KeyError("unknown optional field");
    }
  }
  WIMSE_ASSIGN_OR_RETURN(der::Element parent, r.Next());
  if (parent.tag != der::kInteger || parent.contents.empty() || parent.contents.size() > 5) {
    return KeyError("parent is not a 32-bit INTEGER");
  }
  uint64_t v = 0;
  for (uint8_t b : parent.contents) v = (v << 8) | b;
  if (parent.contents.size() == 5 && parent.contents[0] != 0x00 && parent.contents[0] != 0xff) {
    return KeyError("parent does not fit 32 bits");
  }
  // Negative values (old 32-bit writers) are read as their 32-bit two's complement.
  key.parent = static_cast<uint32_t>(v);
  if (key.parent == 0) key.parent = kOwnerHierarchyParent;
  uint32_t parent_type = key.parent >> 24;
  if (parent_type != 0x40 && parent_type != 0x81) {
    return KeyError("parent handle is neither permanent (0x40...) nor persistent (0x81...)");
  }
  WIMSE_ASSIGN_OR_RETURN(der::Element pub, r.Next());
  if (pub.tag != der::kOctetString) return KeyError("pubkey is not an OCTET STRING");
  WIMSE_ASSIGN_OR_RETURN(der::Element priv, r.Next());
  if (priv.tag != der::kOctetString) return KeyError("privkey is not an OCTET STRING");
  if (!r.empty()) return KeyError("unexpected fields after privkey");
  WIMSE_ASSIGN_OR_RETURN(key.public_blob, NormalizeTpm2b(pub.contents, "pubkey"));
  WIMSE_ASSIGN_OR_RETURN(key.private_blob, NormalizeTpm2b(priv.contents, "privkey"));
  return key;
}

Result<Tss2KeyFile> ParseTss2KeyPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError("BIO_new_mem_buf");
  // Every block is read: the file may hold a certificate beside the key (as nginx and curl
  // accept), but exactly one TSS2 PRIVATE KEY, never a choice between two.
  std::string first_label;
  Bytes der;
  int keys = 0;
  for (int blocks = 0;; ++blocks) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) {
      ERR_clear_error();
      if (blocks > 0) break;
      if (pem.find("-----BEGIN ") != std::string_view::npos) {
        return KeyError("malformed PEM block (damaged base64 or a missing END line)");
      }
      return KeyError("no PEM block found");
    }
    std::string label(name);
    if (blocks == 0) first_label = label;
    if (label == kPemLabel) {
      ++keys;
      der.assign(data, data + len);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_clear_free(data, static_cast<size_t>(len));
  }
  if (keys == 0) {
    return KeyError("PEM label is \"" + first_label + "\", expected \"" + kPemLabel + "\"");
  }
  if (keys > 1) {
    return KeyError("the file holds " + std::to_string(keys) + " \"" + kPemLabel +
                    "\" blocks; give a file with one key");
  }
  return ParseTss2KeyDer(der);
}

Result<Tss2KeyFile> ReadTss2KeyFile(const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(Bytes data, ReadFileBytes(path, kMaxKeyFileSize));
  Result<Tss2KeyFile> key = (!data.empty() && data[0] == der::kSequence)
                                ? ParseTss2KeyDer(data)
                                : ParseTss2KeyPem(AsString(data));
  if (!key.ok()) return key.error().WithContext(path);
  return key;
}

Result<Bytes> EncodeTss2KeyDer(const Tss2KeyFile& key) {
  if (key.public_blob.size() < 2 || key.private_blob.size() < 2) {
    return Error(Layer::kUsage, "TSS2 key: empty public or private blob");
  }
  Bytes body;
  der::AppendElement(body, der::kOid, ByteView(kOidLoadableKey, sizeof(kOidLoadableKey)));
  if (key.empty_auth || key.empty_auth_present) {
    // TRUE is encoded as DER 0xFF. An explicit FALSE is written on request (empty_auth_present:
    // our new keys, as tpm2-openssl reads them; peers' files), else the field is omitted.
    Bytes boolean;
    const uint8_t value = key.empty_auth ? 0xff : 0x00;
    der::AppendElement(boolean, der::kBoolean, ByteView(&value, 1));
    der::AppendElement(body, der::ContextTag(0), boolean);
  }
  der::AppendElement(body, der::kInteger, der::UnsignedIntegerContents(key.parent));
  der::AppendElement(body, der::kOctetString, key.public_blob);
  der::AppendElement(body, der::kOctetString, key.private_blob);
  Bytes out;
  der::AppendElement(out, der::kSequence, body);
  return out;
}

Result<std::string> EncodeTss2KeyPem(const Tss2KeyFile& key) {
  WIMSE_ASSIGN_OR_RETURN(Bytes der, EncodeTss2KeyDer(key));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio(bio.get(), kPemLabel, "", der.data(), static_cast<long>(der.size())) <= 0) {
    return OpenSslError("PEM_write_bio");
  }
  char* p = nullptr;
  long len = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<size_t>(len));
}

Status WriteTss2KeyFile(const std::string& path, const Tss2KeyFile& key) {
  WIMSE_ASSIGN_OR_RETURN(std::string pem, EncodeTss2KeyPem(key));
  return WriteFileAtomic(path, pem, 0600);
}

}  // namespace wimse
