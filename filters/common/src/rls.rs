//! The messages of Envoy's rate limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), as prost types: the filter
//! encodes requests and decodes answers with them, and `edge-ratelimit` serves them. Only the
//! fields either side uses are declared; unknown fields are skipped on decode, as protobuf
//! requires, so answers from envoyproxy/ratelimit or Limitador decode too.

/// gRPC service and method names.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Hits this request adds (0 means 1).
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RateLimit {
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

impl Unit {
    /// Seconds in one unit (`None` for `Unknown`); months and years as 30 and 365 days.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Unit::Unknown => None,
            Unit::Second => Some(1),
            Unit::Minute => Some(60),
            Unit::Hour => Some(3_600),
            Unit::Day => Some(86_400),
            Unit::Week => Some(7 * 86_400),
            Unit::Month => Some(30 * 86_400),
            Unit::Year => Some(365 * 86_400),
        }
    }
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Duration {
    pub fn from_micros(us: u64) -> Self {
        Duration {
            seconds: i64::try_from(us / 1_000_000).unwrap_or(i64::MAX),
            nanos: i32::try_from((us % 1_000_000) * 1_000).unwrap_or(0),
        }
    }

    /// Whole milliseconds, rounded up; negative durations are 0.
    pub fn as_millis_ceil(&self) -> u64 {
        let s = u64::try_from(self.seconds).unwrap_or(0);
        let n = u64::try_from(self.nanos).unwrap_or(0);
        s.saturating_mul(1_000)
            .saturating_add(n.div_ceil(1_000_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_request_encodes_as_protobuf_and_round_trips() {
        let r = RateLimitRequest {
            domain: "edge".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "k".into(),
                    value: "v".into(),
                }],
            }],
            hits_addend: 5,
        };
        let bytes = r.encode_to_vec();
        // Field 1 (domain, length-delimited) first: tag 0x0a, length 4, "edge".
        assert_eq!(bytes.get(..6), Some(&b"\x0a\x04edge"[..]));
        assert_eq!(RateLimitRequest::decode(&bytes[..]).ok(), Some(r));
    }

    #[test]
    fn unknown_fields_in_an_answer_are_skipped() {
        // overall_code OVER_LIMIT, then an unknown field 7 (bytes) such as `quota`.
        let bytes = [0x08, 0x02, 0x3a, 0x02, 0x01, 0x02];
        let r = RateLimitResponse::decode(&bytes[..]).ok();
        assert_eq!(r.map(|r| r.overall_code), Some(Code::OverLimit as i32));
        assert_eq!(Duration::from_micros(1_500_001).as_millis_ceil(), 1_501);
    }
}
