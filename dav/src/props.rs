//! WebDAV dead properties stored as drive extended attributes.
//!
//! Name: `dav:{namespace}name` (Clark notation). Value: the prefix, a NUL, then the
//! property's XML as the client sent it.

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
        let value = set.then(|| {
            let mut v = prop.prefix.clone().unwrap_or_default().into_bytes();
            v.push(0);
            v.extend_from_slice(prop.xml.as_deref().unwrap_or_default());
            v
        });
        changes.push(XattrChange {
            name: key(&prop.namespace, &prop.name),
            value,
        });
        result.push((StatusCode::OK, DavProp { xml: None, ..prop }));
    }
    (changes, result)
}

fn decode(name: &str, value: &[u8], with_content: bool) -> Option<DavProp> {
    let clark = name.strip_prefix(PREFIX)?.strip_prefix('{')?;
    let (namespace, local) = clark.split_once('}')?;
    let split = value.iter().position(|&b| b == 0)?;
    let prefix = String::from_utf8(value[..split].to_vec()).ok()?;
    Some(DavProp {
        name: local.to_owned(),
        prefix: (!prefix.is_empty()).then_some(prefix),
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        xml: with_content.then(|| value[split + 1..].to_vec()),
    })
}

/// (namespace, name, XML) of every dead property of a node, borrowed.
pub(crate) fn decode_all_ref(xattrs: &[(String, Vec<u8>)]) -> Vec<(&str, &str, &[u8])> {
    xattrs
        .iter()
        .filter_map(|(name, value)| {
            let clark = name.strip_prefix(PREFIX)?.strip_prefix('{')?;
            let (namespace, local) = clark.split_once('}')?;
            let split = value.iter().position(|&b| b == 0)?;
            Some((namespace, local, &value[split + 1..]))
        })
        .collect()
}

/// Every dead property of a node.
pub(crate) fn decode_all(xattrs: &[(String, Vec<u8>)], with_content: bool) -> Vec<DavProp> {
    xattrs
        .iter()
        .filter_map(|(name, value)| decode(name, value, with_content))
        .collect()
}

/// The XML of one dead property.
pub(crate) fn find(xattrs: &[(String, Vec<u8>)], prop: &DavProp) -> Option<Vec<u8>> {
    let wanted = key(&prop.namespace, &prop.name);
    let (name, value) = xattrs.iter().find(|(name, _)| *name == wanted)?;
    decode(name, value, true)?.xml
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
        let stored: Vec<_> = changes
            .into_iter()
            .map(|c| (c.name, c.value.unwrap_or_default()))
            .collect();
        let back = decode_all(&stored, true);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name, "color");
        assert_eq!(back[0].namespace, prop.namespace);
        assert_eq!(back[0].prefix, prop.prefix);
        assert_eq!(find(&stored, &prop), prop.xml);
    }
}
