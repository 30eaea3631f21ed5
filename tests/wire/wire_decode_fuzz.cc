// Fuzzes everything a member decodes from a connection: frames, the envelope, and each message.
#include <cstdint>
#include <string_view>

#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kvc::wire::FrameDecoder decoder(1 << 16);
  decoder.feed(reinterpret_cast<const char*>(data), size);
  for (;;) {
    std::string_view payload;
    bool has = false;
    if (!decoder.next(&payload, &has).ok() || !has) break;
    kvc::Result<kvc::wire::Envelope> env = kvc::wire::open_envelope(payload);
    if (!env.ok()) continue;
    (void)kvc::wire::decode_hello(*env->body);
    (void)kvc::wire::decode_hello_reply(*env->body);
    (void)kvc::wire::decode_request(*env->body);
    (void)kvc::wire::decode_response(*env->body);
  }
  return 0;
}
