//! WebDAV dead properties stored as drive extended attributes.
//!
//! Name: `dav:{namespace}name` (Clark notation). Value: the property's XML element as
//! dav-server serialised it from the PROPPATCH.

use dav_server::fs::DavProp;
use http::StatusCode;
use torrentdrive_fs::XattrChange;

const PREFIX: &str = "dav:";

fn key(namespace: &Option<String>, name: &str) -> String {
    format!("{PREFIX}{{{}}}{name}", namespace.as_deref().unwrap_or(""))
}

/// Turns a PROPPATCH into drive changes and the per-property result dav-server reports.
pub(crate) fn patch(patch: Vec<(bool, DavProp)>) -> (Vec<XattrChange>, Vec<(StatusCode, DavProp)>) {
    let mut changes = Vec::with_capacity(patch.len());
    let mut result = Vec::with_capacity(patch.len());
    for (set, prop) in patch {
        let value = set.then(|| prop.xml.clone().unwrap_or_default());
        changes.push(XattrChange {
            name: key(&prop.namespace, &prop.name),
            value,
        });
        result.push((StatusCode::OK, DavProp { xml: None, ..prop }));
    }
    (changes, result)
}

/// (namespace, name, XML) of every dead property among a node's extended attributes.
pub(crate) fn stored(xattrs: &[(String, Vec<u8>)]) -> Vec<(&str, &str, &[u8])> {
    xattrs
        .iter()
        .filter_map(|(name, value)| {
            let clark = name.strip_prefix(PREFIX)?.strip_prefix('{')?;
            let (namespace, local) = clark.split_once('}')?;
            Some((namespace, local, value.as_slice()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let prop = DavProp {
            name: "color".into(),
            prefix: Some("Z".into()),
            namespace: Some("http://example.com/ns".into()),
            xml: Some(b"<Z:color xmlns:Z=\"http://example.com/ns\">red</Z:color>".to_vec()),
        };
        let (changes, result) = patch(vec![(true, prop.clone())]);
        assert_eq!(result[0].0, StatusCode::OK);
        let saved: Vec<_> = changes
            .into_iter()
            .map(|c| (c.name, c.value.unwrap_or_default()))
            .collect();
        let back = stored(&saved);
        assert_eq!(back.len(), 1);
        let (ns, name, xml) = back[0];
        assert_eq!((ns, name), ("http://example.com/ns", "color"));
        assert_eq!(Some(xml.to_vec()), prop.xml);
    }
}
