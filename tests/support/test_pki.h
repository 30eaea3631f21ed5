// Certificates made at test time with OpenSSL's API (EC P-256, SHA-256 signatures), for the TLS
// engine's unit tests and the process tests that run members with TLS: a CA, leaves it signs
// with the subjectAltNames a test asks for, expired ones. Header-only; link OpenSSL::Crypto.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <string>

#include "kvc/common/status.h"

namespace kvc::test {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

struct Issued {
  Key key;
  Cert cert;
};

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
  KVC_CHECK(ext != nullptr, value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A CA when `issuer` is null (self-signed), else a leaf signed by it with `san`
// ("IP:127.0.0.1,DNS:localhost"). Validity: from an hour ago for `days` days (negative: expired).
inline Issued issue(const std::string& cn, const Issued* issuer, const std::string& san,
                    long serial, long days = 30) {
  Issued out;
  out.key.reset(EVP_EC_gen("P-256"));
  KVC_CHECK(out.key != nullptr, "EVP_EC_gen");
  out.cert.reset(X509_new());
  X509* x = out.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  if (days >= 0) {
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L);
  } else {
    X509_gmtime_adj(X509_getm_notBefore(x), (days - 1) * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L);
  }
  X509_set_pubkey(x, out.key.get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("kvc test"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
  if (issuer == nullptr) {
    add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(x, x, NID_subject_key_identifier, "hash");
  } else {
    add_ext(x, issuer_cert, NID_basic_constraints, "CA:FALSE");
    add_ext(x, issuer_cert, NID_key_usage, "critical,digitalSignature");
    add_ext(x, issuer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
    add_ext(x, issuer_cert, NID_authority_key_identifier, "keyid");
    if (!san.empty()) add_ext(x, issuer_cert, NID_subject_alt_name, san.c_str());
  }
  EVP_PKEY* signer = issuer != nullptr ? issuer->key.get() : out.key.get();
  KVC_CHECK(X509_sign(x, signer, EVP_sha256()) > 0, "X509_sign");
  return out;
}

inline void write_cert(const std::string& path, const Issued& i) {
  FILE* f = std::fopen(path.c_str(), "w");
  KVC_CHECK(f != nullptr, path);
  PEM_write_X509(f, i.cert.get());
  std::fclose(f);
}

inline void write_key(const std::string& path, const Issued& i) {
  FILE* f = std::fopen(path.c_str(), "w");
  KVC_CHECK(f != nullptr, path);
  PEM_write_PrivateKey(f, i.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

inline void write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  KVC_CHECK(f != nullptr, path);
  std::fputs(text.c_str(), f);
  std::fclose(f);
}

}  // namespace kvc::test
