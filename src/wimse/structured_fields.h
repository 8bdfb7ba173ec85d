// RFC 8941 Structured Field Values: the subset HTTP message signatures (RFC 9421) and
// Content-Digest (RFC 9530) need: Dictionaries whose members are Items or Inner Lists, with
// Parameters; bare items Integer, Decimal, String, Token, Byte Sequence and Boolean.
//
// Parsing follows RFC 8941 §4.2 with one deliberate deviation (OUR CHOICE, against parser
// differentials like field case C22): a duplicate dictionary key or parameter key is an error
// instead of "last one wins". Serialization follows §4.1 exactly, so re-serializing a parsed
// Signature-Input member gives the canonical @signature-params value of RFC 9421 §2.3.
// Everything here is pure and thread-safe; nothing throws.
#ifndef WIMSE_WIMSE_STRUCTURED_FIELDS_H_
#define WIMSE_WIMSE_STRUCTURED_FIELDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::sf {

enum class Type { kInteger, kDecimal, kString, kToken, kByteSequence, kBoolean };

// One bare item. Only the member matching `type` is meaningful.
struct BareItem {
  Type type = Type::kBoolean;
  int64_t integer = 0;              // kInteger (|v| <= 999999999999999)
  int64_t decimal_thousandths = 0;  // kDecimal, scaled by 1000 (exact, no floating point)
  std::string string;               // kString (printable ASCII) and kToken
  Bytes bytes;                      // kByteSequence
  bool boolean = false;

  static BareItem Integer(int64_t v);
  static BareItem String(std::string v);
  static BareItem Token(std::string v);
  static BareItem ByteSequence(Bytes v);
  static BareItem Boolean(bool v);
};

using Parameters = std::vector<std::pair<std::string, BareItem>>;

struct Item {
  BareItem value;
  Parameters params;
};

struct InnerList {
  std::vector<Item> items;
  Parameters params;
};

// A dictionary member: an Item or an Inner List.
struct Member {
  std::string key;
  bool is_inner_list = false;
  Item item;       // when !is_inner_list
  InnerList list;  // when is_inner_list
};

using Dictionary = std::vector<Member>;

// Parses a Dictionary field value (several field lines already combined with ", ").
// Errors are Layer::kParse with the rule broken ("duplicate dictionary key \"sig1\"", ...).
Result<Dictionary> ParseDictionary(std::string_view text);

// Finds a parameter by key; nullptr when absent.
const BareItem* FindParam(const Parameters& params, std::string_view key);

// Serializations (RFC 8941 §4.1). Fail only on values that cannot be serialized (a string with
// non-printable characters, an out-of-range integer, an invalid key or token).
Result<std::string> SerializeBareItem(const BareItem& item);
Result<std::string> SerializeParams(const Parameters& params);
Result<std::string> SerializeItem(const Item& item);
Result<std::string> SerializeInnerList(const InnerList& list);

// Standard base64 with padding (RFC 4648 §4), as sf-binary uses. Decoding is canonical: the
// re-encoding of the result must equal the input (no whitespace, no non-zero trailing bits).
std::string Base64Encode(ByteView data);
Result<Bytes> Base64DecodeStrict(std::string_view text);

}  // namespace wimse::sf

#endif  // WIMSE_WIMSE_STRUCTURED_FIELDS_H_
