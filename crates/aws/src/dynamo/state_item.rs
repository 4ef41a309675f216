//! How a device state is kept in its item: JSON in `state`, or — past a size at which it would
//! cost a second write unit per close — the same JSON deflated in `sz`. The state grows with
//! operators' use of alarms (each condition keeps a history of 32 changes, the book the ids of
//! the last 64 actions), and every close saves it whole: DynamoDB bills each started kilobyte
//! of the item, so a 5 KB state would make every close cost 5 write units instead of 1.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

/// JSON longer than this is deflated: with the key (`S#<thing>#<profile>`, up to ~200 bytes),
/// `sk` and `version`, an item of 800 bytes of JSON stays under 1 KB.
pub const DEFLATE_ABOVE: usize = 800;

/// What a deflated state may inflate to. A state is bounded (alarm history, remembered
/// actions, notes and names all have limits), far below this; anything larger is not ours.
pub const INFLATE_LIMIT: usize = 1 << 20;

/// The attribute and value that hold `json` in the item.
pub fn encode(json: String) -> (&'static str, AttributeValue) {
    if json.len() > DEFLATE_ABOVE {
        let deflated = miniz_oxide::deflate::compress_to_vec(json.as_bytes(), 6);
        ("sz", AttributeValue::B(Blob::new(deflated)))
    } else {
        ("state", AttributeValue::S(json))
    }
}

/// The state's JSON from its item (`None`: the item holds no state), or why it cannot be read.
pub fn decode(item: &HashMap<String, AttributeValue>) -> Result<Option<String>, String> {
    match (item.get("sz"), item.get("state")) {
        (Some(AttributeValue::B(deflated)), _) => {
            let bytes = miniz_oxide::inflate::decompress_to_vec_with_limit(
                deflated.as_ref(),
                INFLATE_LIMIT,
            )
            .map_err(|e| format!("deflated state does not inflate: {e:?}"))?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| format!("inflated state is not UTF-8: {e}"))
        }
        (Some(_), _) => Err("`sz` is not binary".into()),
        (None, Some(AttributeValue::S(json))) => Ok(Some(json.clone())),
        (None, Some(_)) => Err("`state` is not a string".into()),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(attr: (&'static str, AttributeValue)) -> HashMap<String, AttributeValue> {
        HashMap::from([(attr.0.to_string(), attr.1)])
    }

    #[test]
    fn small_states_stay_json_and_large_ones_come_back_whole() {
        let small = r#"{"applied_window":3}"#.to_string();
        let (name, _) = encode(small.clone());
        assert_eq!(name, "state");
        assert_eq!(decode(&item(encode(small.clone()))).unwrap(), Some(small));
        let entry = r#"{"at_ms":1764600000000,"state":{"state":"active_unacknowledged"},"cause":"raised"},"#;
        let large = format!("{{\"history\":[{}]}}", entry.repeat(32));
        let (name, value) = encode(large.clone());
        assert_eq!(name, "sz");
        let AttributeValue::B(deflated) = &value else {
            panic!("binary")
        };
        assert!(
            deflated.as_ref().len() * 8 < large.len(),
            "{} bytes",
            deflated.as_ref().len()
        );
        assert_eq!(decode(&item((name, value))).unwrap(), Some(large));
    }

    #[test]
    fn a_damaged_or_oversized_state_is_an_error_not_a_panic() {
        let garbage = item(("sz", AttributeValue::B(Blob::new(vec![0xff; 64]))));
        assert!(decode(&garbage).unwrap_err().contains("does not inflate"));
        // 2 MB of zeros deflate to a few kilobytes: refused past the limit.
        let bomb = miniz_oxide::deflate::compress_to_vec(&vec![b' '; 2 << 20], 6);
        let bomb = item(("sz", AttributeValue::B(Blob::new(bomb))));
        assert!(decode(&bomb).is_err());
        let wrong = item(("state", AttributeValue::N("1".into())));
        assert!(decode(&wrong).is_err());
        assert_eq!(decode(&HashMap::new()).unwrap(), None);
    }
}
