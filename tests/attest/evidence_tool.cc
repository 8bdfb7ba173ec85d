// Test helper: converts between tpm2-evidence v1 CMW records and the raw files tpm2-tools reads
// and writes, for the interop tests and for recording test data. Not installed.
//
//   evidence_tool export EVIDENCE.json DIR
//       DIR/{ak.pub,ak.pem,quote.msg,quote.sig,pcrs.bin,key.pub,certify.msg,certify.sig}
//       (pcrs.bin: the quoted PCR values concatenated in index order, as tpm2_pcrread -o writes)
//       and DIR/pcrs.tpm2tools: the same values in tpm2-tools' "serialized" PCR file, a
//       host-endian dump of TPML_PCR_SELECTION, UINT32 count, TPML_DIGEST[count] (what
//       tpm2_quote -o writes and tpm2_checkquote -f reads without -l; tpm2-tools 5.4 fails to
//       hash a values-only file given with -l, even its own). Test use only: never a wire format.
//   evidence_tool keyblobs KEY.pem DIR
//       DIR/{key.pub,key.priv}: TPM2B_PUBLIC and TPM2B_PRIVATE of a TSS2 PRIVATE KEY file, for
//       tpm2_load (tpm2-tools 5.4 does not take the PEM as a context)
//   evidence_tool import DIR NONCE_HEX BANK OUT.json
//       reads DIR/{ak.pub,quote.msg,quote.sig,pcrs.bin,key.pub,certify.msg,certify.sig} and the
//       PCR indices from DIR/pcrs.list ("0,1,...") and writes a CMW record.
//   evidence_tool parse-attest FILE
//       parses FILE (raw TPMS_ATTEST bytes, e.g. quote.msg/certify.msg from `export`) the way
//       the verifier does (magic checked on the raw header, tss2-mu unmarshal that must consume
//       every byte) and prints every field as one JSON object (hex strings, integers), for the
//       field-by-field comparison with python3-tpm2-pytss (pytss_compare_test.sh). Exit 1 on a
//       parse error.
#include <tss2/tss2_mu.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "attest/evidence_format.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "keyfile/tss2_key.h"
#include "util/file.h"

namespace {

using namespace wimse;
using namespace wimse::attest;

int Die(const std::string& what) {
  std::fprintf(stderr, "evidence_tool: %s\n", what.c_str());
  return 1;
}

int Export(const std::string& in, const std::string& dir) {
  auto text = ReadFileString(in, kMaxEvidenceSize);
  if (!text.ok()) return Die(text.error().ToString());
  auto json = UnwrapCmw(*text);
  if (!json.ok()) return Die(json.error().ToString());
  auto e = DecodeEvidenceJson(*json);
  if (!e.ok()) return Die(e.error().ToString());
  if (e->quotes.empty() || e->keys.empty()) return Die("no quote or key");
  Bytes pcrs;
  for (const auto& [i, v] : e->quotes[0].pcrs) {
    pcrs.insert(pcrs.end(), v.begin(), v.end());
  }
  Result<uint16_t> bank = BankAlgFromName(e->quotes[0].bank);
  if (!bank.ok()) return Die(bank.error().ToString());
  TPML_PCR_SELECTION sel{};
  sel.count = 1;
  sel.pcrSelections[0].hash = *bank;
  sel.pcrSelections[0].sizeofSelect = 3;
  std::vector<TPML_DIGEST> digests;
  for (const auto& [i, v] : e->quotes[0].pcrs) {
    sel.pcrSelections[0].pcrSelect[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
    if (digests.empty() || digests.back().count == 8) {
      digests.push_back(TPML_DIGEST{});
    }
    TPM2B_DIGEST& d = digests.back().digests[digests.back().count++];
    d.size = static_cast<uint16_t>(v.size());
    std::copy(v.begin(), v.end(), d.buffer);
  }
  Bytes serialized;
  auto append = [&](const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    serialized.insert(serialized.end(), b, b + n);
  };
  uint32_t count = static_cast<uint32_t>(digests.size());
  append(&sel, sizeof(sel));
  append(&count, sizeof(count));
  append(digests.data(), digests.size() * sizeof(TPML_DIGEST));
  auto pub = UnmarshalTpm2bPublic(e->ak_public);
  if (!pub.ok()) return Die(pub.error().ToString());
  auto key = PublicKeyFromTpmPublic(pub->publicArea);
  if (!key.ok()) return Die(key.error().ToString());
  auto pem = PublicKeyToPem(key->get());
  if (!pem.ok()) return Die(pem.error().ToString());
  struct {
    const char* name;
    ByteView data;
  } files[] = {
      {"ak.pub", e->ak_public},
      {"ak.pem", AsBytes(*pem)},
      {"quote.msg", e->quotes[0].quote.attest},
      {"quote.sig", e->quotes[0].quote.signature},
      {"pcrs.bin", pcrs},
      {"pcrs.tpm2tools", serialized},
      {"key.pub", e->keys[0].public_blob},
      {"certify.msg", e->keys[0].certify.attest},
      {"certify.sig", e->keys[0].certify.signature},
  };
  for (const auto& f : files) {
    auto s = WriteFileAtomic(dir + "/" + f.name, f.data);
    if (!s.ok()) return Die(s.error().ToString());
  }
  return 0;
}

int KeyBlobs(const std::string& path, const std::string& dir) {
  auto key = ReadTss2KeyFile(path);
  if (!key.ok()) return Die(key.error().ToString());
  auto s = WriteFileAtomic(dir + "/key.pub", key->public_blob);
  if (s.ok()) s = WriteFileAtomic(dir + "/key.priv", key->private_blob);
  if (!s.ok()) return Die(s.error().ToString());
  return 0;
}

int Import(const std::string& dir, const std::string& nonce_hex, const std::string& bank,
           const std::string& out) {
  auto read = [&](const char* name) { return ReadFileBytes(dir + "/" + name); };
  Tpm2Evidence e;
  auto nonce = HexDecode(nonce_hex);
  if (!nonce.ok()) return Die(nonce.error().ToString());
  e.nonce = *nonce;
  auto bank_alg = BankAlgFromName(bank);
  if (!bank_alg.ok()) return Die(bank_alg.error().ToString());
  size_t digest_size = bank == "sha1" ? 20 : bank == "sha256" ? 32 : bank == "sha384" ? 48 : 64;
  auto ak = read("ak.pub");
  auto qm = read("quote.msg");
  auto qs = read("quote.sig");
  auto pcrs = read("pcrs.bin");
  auto list = ReadFileString(dir + "/pcrs.list");
  auto kp = read("key.pub");
  auto cm = read("certify.msg");
  auto cs = read("certify.sig");
  for (const auto* r : {&ak, &qm, &qs, &pcrs, &kp, &cm, &cs}) {
    if (!r->ok()) return Die(r->error().ToString());
  }
  if (!list.ok()) return Die(list.error().ToString());
  e.ak_public = *ak;
  QuoteEvidence q;
  q.quote = SignedAttest{*qm, *qs};
  q.bank = bank;
  std::stringstream ss(*list);
  std::string item;
  size_t offset = 0;
  while (std::getline(ss, item, ',')) {
    if (offset + digest_size > pcrs->size()) return Die("pcrs.bin too short");
    q.pcrs[static_cast<uint32_t>(std::stoul(item))] =
        Bytes(pcrs->begin() + offset, pcrs->begin() + offset + digest_size);
    offset += digest_size;
  }
  if (offset != pcrs->size()) return Die("pcrs.bin longer than pcrs.list");
  e.quotes.push_back(q);
  e.keys.push_back(KeyEvidence{*kp, SignedAttest{*cm, *cs}});
  e.swname = "tpm2-tools";
  auto s = WriteFileAtomic(out, WrapCmw(EncodeEvidenceJson(e)) + "\n");
  if (!s.ok()) return Die(s.error().ToString());
  return 0;
}

std::string HexOf(const uint8_t* p, size_t n) { return HexEncode(ByteView(p, n)); }

int ParseAttest(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  if (!bytes.ok()) return Die(bytes.error().ToString());
  if (bytes->size() < 6 || bytes->size() > sizeof(TPMS_ATTEST)) return Die("bad TPMS_ATTEST size");
  TPMS_ATTEST a{};
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMS_ATTEST_Unmarshal(bytes->data(), bytes->size(), &offset, &a);
  if (rc != TSS2_RC_SUCCESS) return Die("TPMS_ATTEST does not unmarshal");
  if (offset != bytes->size()) return Die("TPMS_ATTEST has trailing bytes");
  std::string j = "{";
  auto num = [&](const char* k, uint64_t v) {
    j += "\"" + std::string(k) + "\":" + std::to_string(v) + ",";
  };
  auto hex = [&](const char* k, const uint8_t* p, size_t n) {
    j += "\"" + std::string(k) + "\":\"" + HexOf(p, n) + "\",";
  };
  num("magic", a.magic);
  num("type", a.type);
  hex("qualifiedSigner", a.qualifiedSigner.name, a.qualifiedSigner.size);
  hex("extraData", a.extraData.buffer, a.extraData.size);
  num("clock", a.clockInfo.clock);
  num("resetCount", a.clockInfo.resetCount);
  num("restartCount", a.clockInfo.restartCount);
  num("safe", a.clockInfo.safe);
  num("firmwareVersion", a.firmwareVersion);
  if (a.type == TPM2_ST_ATTEST_QUOTE) {
    const TPMS_QUOTE_INFO& q = a.attested.quote;
    if (q.pcrSelect.count > TPM2_NUM_PCR_BANKS) return Die("pcrSelect count too large");
    j += "\"pcrSelect\":[";
    for (uint32_t i = 0; i < q.pcrSelect.count; ++i) {
      const TPMS_PCR_SELECTION& s = q.pcrSelect.pcrSelections[i];
      j += std::string(i ? "," : "") + "{\"hash\":" + std::to_string(s.hash) + ",\"pcrSelect\":\"" +
           HexOf(s.pcrSelect, s.sizeofSelect) + "\"}";
    }
    j += "],";
    hex("pcrDigest", q.pcrDigest.buffer, q.pcrDigest.size);
  } else if (a.type == TPM2_ST_ATTEST_CERTIFY) {
    hex("name", a.attested.certify.name.name, a.attested.certify.name.size);
    hex("qualifiedName", a.attested.certify.qualifiedName.name,
        a.attested.certify.qualifiedName.size);
  }
  j.back() = '}';
  std::printf("%s\n", j.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "export" && argc == 4) {
    return Export(argv[2], argv[3]);
  }
  if (cmd == "keyblobs" && argc == 4) {
    return KeyBlobs(argv[2], argv[3]);
  }
  if (cmd == "import" && argc == 6) {
    return Import(argv[2], argv[3], argv[4], argv[5]);
  }
  if (cmd == "parse-attest" && argc == 3) {
    return ParseAttest(argv[2]);
  }
  std::fprintf(stderr,
               "usage: evidence_tool export EVIDENCE.json DIR\n"
               "       evidence_tool parse-attest TPMS_ATTEST_FILE\n"
               "       evidence_tool keyblobs KEY.pem DIR\n"
               "       evidence_tool import DIR NONCE_HEX BANK OUT.json\n");
  return 2;
}
