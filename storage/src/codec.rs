//! Versioned records: one version byte, then the value in postcard (compact serde). A
//! reader that meets a version it does not know says so instead of misreading it.

use crate::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A type stored as a record, with the version it is written in today.
pub trait Record: Serialize + DeserializeOwned {
    const TREE: &'static str;
    const VERSION: u8;
}

pub fn encode<T: Record>(v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![T::VERSION];
    out.extend(postcard::to_stdvec(v).map_err(|e| StoreError::Encode { tree: T::TREE, reason: e.to_string() })?);
    Ok(out)
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, StoreError> {
    let (&version, body) =
        bytes.split_first().ok_or(StoreError::Corrupt { tree: T::TREE, reason: "empty record".into() })?;
    if version != T::VERSION {
        return Err(StoreError::Corrupt {
            tree: T::TREE,
            reason: format!("record version {version}, this build reads {}", T::VERSION),
        });
    }
    postcard::from_bytes(body).map_err(|e| StoreError::Corrupt { tree: T::TREE, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Thing {
        a: u32,
        b: String,
    }

    impl Record for Thing {
        const TREE: &'static str = "things";
        const VERSION: u8 = 3;
    }

    #[test]
    fn round_trips_and_refuses_other_versions_and_garbage() {
        let t = Thing { a: 5, b: "x".into() };
        let bytes = encode(&t).expect("encode");
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<Thing>(&bytes).expect("decode"), t);
        let mut old = bytes.clone();
        old[0] = 2;
        assert!(decode::<Thing>(&old).expect_err("v2").to_string().contains("version 2"));
        assert!(decode::<Thing>(&[]).is_err());
        assert!(decode::<Thing>(&[3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
