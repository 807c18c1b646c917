//! Structs read from JSON objects only. serde's derive also fills a struct from a
//! JSON list, by position (`[null, null]` as a model limit); no API document
//! describes that, so fields holding structs read through these functions.

use std::collections::BTreeMap;

use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error};

/// `T`, read only from a JSON object.
struct ObjectOnly<T>(T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::deserialize(d)?;
        T::deserialize(serde_json::Value::Object(map))
            .map(Self)
            .map_err(D::Error::custom)
    }
}

/// A struct field (`deserialize_with`).
pub fn one<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    ObjectOnly::deserialize(d).map(|o| o.0)
}

/// An optional struct field; `null` is the same as leaving it out.
pub fn option<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<ObjectOnly<T>>::deserialize(d)?.map(|o| o.0))
}

/// A map whose values are structs.
pub fn map_values<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: DeserializeOwned,
{
    Ok(BTreeMap::<K, ObjectOnly<V>>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::billing::Billing;
    use crate::policy::Policy;
    use crate::rules::Rules;

    #[test]
    fn structs_inside_come_from_objects_only() {
        for bad in [
            r#"{"model_limits":{"m":[null,null]}}"#,
            r#"{"model_limits":{"m":[]}}"#,
            r#"{"credit":[1,"day"]}"#,
        ] {
            assert!(serde_json::from_str::<Policy>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Billing>(r#"{"prices":{"m":[]}}"#).is_err());
        for bad in [
            r#"{"pricing":{"m":[1]}}"#,
            r#"{"model_limits":{"m":[5]}}"#,
            r#"{"limits":[]}"#,
        ] {
            assert!(serde_json::from_str::<Rules>(bad).is_err(), "{bad}");
        }
        let ok: Policy = serde_json::from_str(
            r#"{"model_limits":{"m":{"rpm":5}},"credit":{"limit_nanos":1,"period":"day"}}"#,
        )
        .unwrap();
        assert_eq!(ok.model_limits.len(), 1);
        let cleared: Policy = serde_json::from_str(r#"{"credit":null}"#).unwrap();
        assert!(cleared.credit.is_none());
    }
}
