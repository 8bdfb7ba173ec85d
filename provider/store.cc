// STORE for the `tpmkey:` URI scheme (provider-guide §7.4).
//
//   tpmkey:file=<path>   a TSS2 PRIVATE KEY file (PEM or DER)
//
// Plain paths and `file:` URIs already work through the default provider's file store, which
// runs our decoders; this scheme names a TPM key explicitly (and refuses anything else) so
// applications that take only URIs can use it. `handle=0x81...` (persistent keys) and NV
// certificates come later. open() only parses the URI; load() reads the file and builds the
// key object without TPM I/O. There is no export_object: a public-only export would silently
// turn the private key into an OSSL_STORE_INFO_PUBKEY (guide §3).
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/params.h>

#include <cstring>
#include <new>
#include <string_view>

#include "keyfile/tss2_key.h"
#include "provider/provider.h"

namespace wimse::provider {

namespace {

constexpr std::string_view kFilePrefix = "tpmkey:file=";

struct StoreCtx {
  ProviderContext* prov = nullptr;
  std::string path;
  bool eof = false;
};

void* Open(void* provctx, const char* uri) noexcept {
  auto* prov = static_cast<ProviderContext*>(provctx);
  try {
    std::string_view u(uri != nullptr ? uri : "");
    if (u.substr(0, kFilePrefix.size()) != kFilePrefix || u.size() == kFilePrefix.size()) {
      WIMSE_PROV_RAISE(prov, kReasonBadUri, "expected tpmkey:file=<path>");
      return nullptr;
    }
    auto ctx = std::make_unique<StoreCtx>();
    ctx->prov = prov;
    ctx->path = std::string(u.substr(kFilePrefix.size()));
    return ctx.release();
  } catch (...) {
    return nullptr;
  }
}

// `expect`, `properties` and search criteria are accepted and ignored: the URI names exactly
// one key.
int SetCtxParams(void* /*loaderctx*/, const OSSL_PARAM /*params*/[]) noexcept { return 1; }

const OSSL_PARAM kSettableCtxParams[] = {
    OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, nullptr),
    OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_PROPERTIES, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* SettableCtxParams(void* /*provctx*/) noexcept { return kSettableCtxParams; }

int Load(void* loaderctx, OSSL_CALLBACK* object_cb, void* object_cbarg,
         OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg) noexcept {
  auto* ctx = static_cast<StoreCtx*>(loaderctx);
  try {
    ctx->eof = true;  // one object per URI
    auto file = ReadTss2KeyFile(ctx->path);
    if (!file.ok()) {
      WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonCannotLoadKey, file.error());
      return 0;
    }
    bool not_ours = false;
    std::unique_ptr<ProviderKey> key =
        KeyFromTss2File(ctx->prov, std::move(file).value(), pw_cb, pw_cbarg, &not_ours);
    if (!key) {
      if (not_ours) {
        WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedKey,
                         "%s does not hold a TPM EC key", ctx->path.c_str());
      }
      return 0;
    }
    KeyReference ref = key.release();
    int object_type = OSSL_OBJECT_PKEY;
    char data_type[] = "EC";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type),
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, data_type, 0),
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref)),
        OSSL_PARAM_construct_end(),
    };
    int ret = object_cb(params, object_cbarg);
    delete ref;  // null if keymgmt load took it
    return ret;
  } catch (...) {
    return 0;
  }
}

int Eof(void* loaderctx) noexcept { return static_cast<StoreCtx*>(loaderctx)->eof ? 1 : 0; }

int Close(void* loaderctx) noexcept {
  delete static_cast<StoreCtx*>(loaderctx);
  return 1;
}

}  // namespace

const OSSL_DISPATCH kTpmKeyStoreFunctions[] = {
    {OSSL_FUNC_STORE_OPEN, reinterpret_cast<void (*)()>(Open)},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, reinterpret_cast<void (*)()>(SettableCtxParams)},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, reinterpret_cast<void (*)()>(SetCtxParams)},
    {OSSL_FUNC_STORE_LOAD, reinterpret_cast<void (*)()>(Load)},
    {OSSL_FUNC_STORE_EOF, reinterpret_cast<void (*)()>(Eof)},
    {OSSL_FUNC_STORE_CLOSE, reinterpret_cast<void (*)()>(Close)},
    {0, nullptr},
};

}  // namespace wimse::provider
