// STORE for TPM keys (provider-guide §7.4). URI grammar (strict; nothing read from the
// environment):
//
//   handle:0x81xxxxxx[?pass]          a persistent key (TPM2_ReadPublic on load)
//   tpmkey:handle=0x81xxxxxx[?pass]   the same
//   tpmkey:file=<path>                a TSS2 PRIVATE KEY file (PEM or DER)
//
// `?pass` asks the passphrase callback for the key's authorization value (persistent keys
// carry no emptyAuth flag; tpm2-openssl #136 is the bug of never asking). Plain paths and
// `file:` URIs already work through the default provider's file store, which runs our
// decoders. open() only parses the URI (a malformed handle is reported by load(), see
// StoreCtx::bad_uri); load() does the TPM I/O. There is no export_object: a
// public-only export would silently turn the private key into an OSSL_STORE_INFO_PUBKEY
// (guide §3).
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/params.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string_view>

#include "keyfile/key_ref.h"
#include "keyfile/tss2_key.h"
#include "provider/provider.h"

namespace wimse::provider {

namespace {

constexpr std::string_view kFilePrefix = "tpmkey:file=";
constexpr std::string_view kTpmkeyHandlePrefix = "tpmkey:handle=";
constexpr std::string_view kHandlePrefix = "handle:";
constexpr std::string_view kPassSuffix = "?pass";

struct StoreCtx {
  ProviderContext* prov = nullptr;
  std::string path;     // file keys
  uint32_t handle = 0;  // persistent keys
  bool ask_pass = false;
  bool eof = false;
  // A URI of our schemes that does not parse: open() succeeds and load() raises this. If
  // open() failed, OpenSSL 3.0 would go on to its file loader and print only "unregistered
  // scheme" and "calling stat(handle:0x)", dropping our reason.
  std::optional<Error> bad_uri;
};

void* Open(void* provctx, const char* uri) noexcept {
  auto* prov = static_cast<ProviderContext*>(provctx);
  try {
    std::string_view u(uri != nullptr ? uri : "");
    auto ctx = std::make_unique<StoreCtx>();
    ctx->prov = prov;
    if (u.substr(0, kFilePrefix.size()) == kFilePrefix && u.size() > kFilePrefix.size()) {
      ctx->path = std::string(u.substr(kFilePrefix.size()));
      return ctx.release();
    }
    std::string_view rest;
    if (u.substr(0, kHandlePrefix.size()) == kHandlePrefix) {
      rest = u.substr(kHandlePrefix.size());
    } else if (u.substr(0, kTpmkeyHandlePrefix.size()) == kTpmkeyHandlePrefix) {
      rest = u.substr(kTpmkeyHandlePrefix.size());
    } else {
      ctx->bad_uri =
          Error(Layer::kUsage, "\"" + std::string(u) +
                                   "\": expected handle:0x81xxxxxx, tpmkey:handle=0x81xxxxxx or "
                                   "tpmkey:file=<path>");
      return ctx.release();
    }
    if (rest.size() > kPassSuffix.size() &&
        rest.substr(rest.size() - kPassSuffix.size()) == kPassSuffix) {
      ctx->ask_pass = true;
      rest = rest.substr(0, rest.size() - kPassSuffix.size());
    }
    auto handle = ParsePersistentHandle(rest);  // keyfile/key_ref.h, shared with the CLI
    if (!handle.ok()) {
      ctx->bad_uri = handle.error();
      return ctx.release();
    }
    ctx->handle = *handle;
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

std::unique_ptr<ProviderKey> LoadPersistent(StoreCtx* ctx, OSSL_PASSPHRASE_CALLBACK* pw_cb,
                                            void* pw_cbarg) {
  SoftwareCtxScope software(ctx->prov);  // OpenPersistent builds an EVP_PKEY (NULL context)
  auto wk = tpm::WorkloadKey::OpenPersistent(ctx->prov->Tpm(), ctx->handle);
  if (!wk.ok()) {
    int reason = ReasonForError(wk.error(), kReasonCannotLoadKey);
    if (wk.error().layer() == Layer::kPolicy &&
        wk.error().message().find("restricted") != std::string::npos) {
      reason = kReasonRestrictedKey;  // C05: an AK behind handle: is refused at load
    } else if (wk.error().layer() == Layer::kPolicy &&
               wk.error().message().find("userWithAuth clear") != std::string::npos) {
      reason = kReasonPolicyOnlyKey;
    }
    WIMSE_PROV_RAISE_ERROR(ctx->prov, reason, wk.error());
    return nullptr;
  }
  int reason = kReasonCannotLoadKey;
  auto key = ProviderKey::FromWorkloadKey(ctx->prov, std::move(wk).value(), &reason);
  if (!key.ok()) {
    WIMSE_PROV_RAISE_ERROR(ctx->prov, reason, key.error());
    return nullptr;
  }
  if (ctx->ask_pass &&
      !ObtainKeyAuth(ctx->prov, (*key)->key.get(), "persistent TPM key", pw_cb, pw_cbarg)) {
    return nullptr;
  }
  return std::move(key).value();
}

int Load(void* loaderctx, OSSL_CALLBACK* object_cb, void* object_cbarg,
         OSSL_PASSPHRASE_CALLBACK* pw_cb, void* pw_cbarg) noexcept {
  auto* ctx = static_cast<StoreCtx*>(loaderctx);
  try {
    ctx->eof = true;  // one object per URI
    if (ctx->bad_uri) {
      WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonBadUri, *ctx->bad_uri);
      return 0;
    }
    std::unique_ptr<ProviderKey> key;
    if (ctx->handle != 0) {
      key = LoadPersistent(ctx, pw_cb, pw_cbarg);
    } else {
      auto file = ReadTss2KeyFile(ctx->path);
      if (!file.ok()) {
        WIMSE_PROV_RAISE_ERROR(ctx->prov, kReasonCannotLoadKey, file.error());
        return 0;
      }
      bool not_ours = false;
      key = KeyFromTss2File(ctx->prov, std::move(file).value(), pw_cb, pw_cbarg, std::nullopt,
                            &not_ours);
      if (!key && not_ours) {
        WIMSE_PROV_RAISE(ctx->prov, kReasonUnsupportedKey, "%s does not hold a TPM key",
                         ctx->path.c_str());
      }
    }
    if (!key) {
      return 0;
    }
    return PassKeyReference(std::move(key), object_cb, object_cbarg);
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
