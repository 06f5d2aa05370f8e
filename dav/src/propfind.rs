//! PROPFIND, answered here instead of by dav-server: one listing of the folder, one pass
//! writing the XML. dav-server builds an XML tree per entry and asks for dead properties per
//! entry; on a 10,000-entry folder that is most of the time a file manager waits.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dav_server::body::Body;
use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem};
use http::{header, Response, StatusCode};
use torrentdrive_fs::{name_from_bytes, Attr, FsError, NodeKind};
use xmltree::{Element, EmitterConfig};

use crate::fs::DavUser;

const DAV: &str = "DAV:";
const APACHE: &str = "http://apache.org/dav/props/";

/// A property name: namespace (empty for none) and local name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prop {
    ns: String,
    name: String,
}

/// What the request body asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// Live and dead properties, plus `include`d ones (RFC 4918 14.8).
    All(Vec<Prop>),
    Names,
    Some(Vec<Prop>),
}

/// Parses a PROPFIND body; `None` if it is not a valid `propfind` document.
pub(crate) fn parse_body(body: &[u8]) -> Option<Want> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Want::All(Vec::new()));
    }
    let root = Element::parse(body).ok()?;
    if root.name != "propfind" || root.namespace.as_deref() != Some(DAV) {
        return None;
    }
    let children: Vec<&Element> = root
        .children
        .iter()
        .filter_map(|c| c.as_element())
        .collect();
    let props_of = |e: &Element| -> Vec<Prop> {
        e.children
            .iter()
            .filter_map(|c| c.as_element())
            .map(|p| Prop {
                ns: p.namespace.clone().unwrap_or_default(),
                name: p.name.clone(),
            })
            .collect()
    };
    let is = |e: &&Element, name: &str| e.name == name && e.namespace.as_deref() == Some(DAV);
    if let Some(prop) = children.iter().find(|e| is(e, "prop")) {
        return Some(Want::Some(props_of(prop)));
    }
    if children.iter().any(|e| is(e, "propname")) {
        return Some(Want::Names);
    }
    if children.iter().any(|e| is(e, "allprop")) {
        let include = children
            .iter()
            .find(|e| is(e, "include"))
            .map(|e| props_of(e))
            .unwrap_or_default();
        return Some(Want::All(include));
    }
    None
}

/// One resource of the answer.
struct Resource {
    /// Path below the prefix, decoded, without a trailing slash ("" for the root).
    path: String,
    attr: Attr,
}

pub(crate) struct Propfind<'a> {
    pub user: &'a DavUser,
    pub locks: &'a dyn DavLockSystem,
    /// URL prefix of the drive, e.g. `/dav`.
    pub prefix: &'a str,
}

impl Propfind<'_> {
    /// Answers a PROPFIND of `path` (below the prefix, decoded) with depth 0 or 1.
    pub(crate) async fn answer(&self, path: &[u8], depth_one: bool, want: Want) -> Response<Body> {
        match self.collect(path, depth_one, &want).await {
            Ok(xml) => {
                let mut res = Response::new(Body::from(Bytes::from(xml)));
                *res.status_mut() = StatusCode::MULTI_STATUS;
                let h = res.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/xml; charset=utf-8"),
                );
                h.insert(
                    header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-cache"),
                );
                res
            }
            Err(e) => {
                let mut res = Response::new(Body::from(format!("{e}\n")));
                *res.status_mut() = StatusCode::from_u16(e.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                res
            }
        }
    }

    async fn collect(&self, path: &[u8], depth_one: bool, want: &Want) -> Result<String, FsError> {
        let names: Vec<&str> = path
            .split(|&b| b == b'/')
            .filter(|s| !s.is_empty())
            .map(name_from_bytes)
            .collect::<Result<_, _>>()?;
        let drive = &self.user.drive;
        let attr = drive.resolve(&names).await?;
        let base = names.join("/");
        let mut resources = vec![Resource {
            path: base.clone(),
            attr: attr.clone(),
        }];
        if depth_one && attr.is_dir() {
            for e in drive.list(attr.id).await? {
                let path = if base.is_empty() {
                    e.name
                } else {
                    format!("{base}/{}", e.name)
                };
                resources.push(Resource { path, attr: e.attr });
            }
        }
        let wants_quota = match want {
            Want::Some(p) | Want::All(p) => p
                .iter()
                .any(|p| p.ns == DAV && p.name.starts_with("quota-")),
            Want::Names => false,
        };
        let used = if wants_quota {
            Some(drive.usage().await?)
        } else {
            None
        };
        let wants_locks = match want {
            Want::All(_) => true,
            Want::Some(p) => p.iter().any(|p| p.ns == DAV && p.name == "lockdiscovery"),
            Want::Names => false,
        };

        let mut out = String::with_capacity(256 + resources.len() * 600);
        out.push_str(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">",
        );
        for r in &resources {
            let xattrs = if r.attr.has_xattrs {
                drive.xattrs(r.attr.id).await?
            } else {
                Vec::new()
            };
            let dead = dead_props(&xattrs);
            let locks = if wants_locks {
                self.locks_of(&r.path).await
            } else {
                Vec::new()
            };
            let ctx = Ctx {
                r,
                dead: &dead,
                locks: &locks,
                usage: used.map(|u| (u.used, u.available)),
            };
            self.write_response(&mut out, &ctx, want);
        }
        out.push_str("</D:multistatus>\n");
        Ok(out)
    }

    async fn locks_of(&self, path: &str) -> Vec<DavLock> {
        match DavPath::new(&format!("/{}", encode_path(path))) {
            Ok(p) => self.locks.discover(&p).await,
            Err(_) => Vec::new(),
        }
    }

    fn write_response(&self, out: &mut String, ctx: &Ctx<'_>, want: &Want) {
        out.push_str("<D:response><D:href>");
        out.push_str(&encode_path(self.prefix));
        out.push('/');
        out.push_str(&encode_path(&ctx.r.path));
        if ctx.r.attr.is_dir() && !ctx.r.path.is_empty() {
            out.push('/');
        }
        out.push_str("</D:href><D:propstat><D:prop>");
        let mut missing = Vec::new();
        match want {
            Want::All(include) => {
                for name in ALLPROP {
                    if !ctx.has_dead(DAV, name) {
                        ctx.live(out, name);
                    }
                }
                for (_, xml) in ctx.dead {
                    out.push_str(xml);
                }
                for p in include {
                    let listed = p.ns == DAV && ALLPROP.contains(&p.name.as_str());
                    if !listed
                        && !ctx
                            .dead
                            .iter()
                            .any(|(k, _)| *k == (p.ns.as_str(), p.name.as_str()))
                        && !ctx.prop(out, p)
                    {
                        missing.push(p);
                    }
                }
            }
            Want::Names => {
                for name in PROPNAMES {
                    if ctx.live_exists(name) {
                        let _ = write!(out, "<D:{name}/>");
                    }
                }
                if ctx.r.attr.kind == NodeKind::File {
                    out.push_str("<A:executable xmlns:A=\"http://apache.org/dav/props/\"/>");
                }
                for ((ns, name), _) in ctx.dead {
                    empty_element(out, ns, name);
                }
            }
            Want::Some(props) => {
                for p in props {
                    if !ctx.prop(out, p) {
                        missing.push(p);
                    }
                }
            }
        }
        out.push_str("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>");
        if !missing.is_empty() {
            out.push_str("<D:propstat><D:prop>");
            for p in missing {
                empty_element(out, &p.ns, &p.name);
            }
            out.push_str("</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>");
        }
        out.push_str("</D:response>");
    }
}

/// Live properties in an `allprop` answer (RFC 4918 leaves quota out, RFC 4331 3).
const ALLPROP: [&str; 8] = [
    "creationdate",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "lockdiscovery",
    "resourcetype",
    "supportedlock",
];

const PROPNAMES: [&str; 11] = [
    "creationdate",
    "displayname",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "lockdiscovery",
    "resourcetype",
    "supportedlock",
    "quota-available-bytes",
    "quota-used-bytes",
];

struct Ctx<'a> {
    r: &'a Resource,
    /// ((namespace, name), XML) of each dead property.
    dead: &'a [((&'a str, &'a str), String)],
    locks: &'a [DavLock],
    /// (used, available) when quota properties were asked for.
    usage: Option<(u64, u64)>,
}

impl Ctx<'_> {
    fn has_dead(&self, ns: &str, name: &str) -> bool {
        self.dead.iter().any(|(k, _)| *k == (ns, name))
    }

    fn live_exists(&self, name: &str) -> bool {
        let dir = self.r.attr.is_dir();
        match name {
            "getcontentlength" => !dir,
            "quota-available-bytes" | "quota-used-bytes" => dir,
            _ => true,
        }
    }

    /// Writes a requested property; false if the resource has no such property.
    fn prop(&self, out: &mut String, p: &Prop) -> bool {
        if let Some((_, xml)) = self
            .dead
            .iter()
            .find(|(k, _)| *k == (p.ns.as_str(), p.name.as_str()))
        {
            out.push_str(xml);
            return true;
        }
        match p.ns.as_str() {
            DAV => self.live(out, &p.name),
            APACHE if p.name == "executable" && !self.r.attr.is_dir() => {
                out.push_str(
                    "<A:executable xmlns:A=\"http://apache.org/dav/props/\">F</A:executable>",
                );
                true
            }
            _ => false,
        }
    }

    /// Writes a live DAV: property; false if it does not apply.
    fn live(&self, out: &mut String, name: &str) -> bool {
        let a = &self.r.attr;
        let dir = a.is_dir();
        match name {
            "creationdate" => {
                let _ = write!(out, "<D:creationdate>{}</D:creationdate>", rfc3339(a.mtime));
            }
            "displayname" => {
                let shown = self.r.path.rsplit('/').next().unwrap_or_default();
                let _ = write!(out, "<D:displayname>{}</D:displayname>", escape(shown));
            }
            "getcontentlength" if !dir => {
                let _ = write!(out, "<D:getcontentlength>{}</D:getcontentlength>", a.size);
            }
            "getcontenttype" => {
                let mime = if dir {
                    "httpd/unix-directory"
                } else {
                    mime_of(&self.r.path)
                };
                let _ = write!(out, "<D:getcontenttype>{mime}</D:getcontenttype>");
            }
            "getetag" => {
                let _ = write!(out, "<D:getetag>\"{}\"</D:getetag>", a.etag());
            }
            "getlastmodified" => {
                let _ = write!(
                    out,
                    "<D:getlastmodified>{}</D:getlastmodified>",
                    http_date(a.mtime)
                );
            }
            "resourcetype" if dir => {
                out.push_str("<D:resourcetype><D:collection/></D:resourcetype>")
            }
            "resourcetype" => out.push_str("<D:resourcetype/>"),
            "supportedlock" => out.push_str(
                "<D:supportedlock><D:lockentry><D:lockscope><D:exclusive/></D:lockscope>\
                 <D:locktype><D:write/></D:locktype></D:lockentry><D:lockentry><D:lockscope>\
                 <D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>\
                 </D:supportedlock>",
            ),
            "lockdiscovery" => {
                out.push_str("<D:lockdiscovery>");
                for lock in self.locks {
                    write_lock(out, lock);
                }
                out.push_str("</D:lockdiscovery>");
            }
            "quota-used-bytes" | "quota-available-bytes" if dir => {
                let Some((used, available)) = self.usage else {
                    return false;
                };
                let value = if name == "quota-used-bytes" {
                    used
                } else {
                    available
                };
                let _ = write!(out, "<D:{name}>{value}</D:{name}>");
            }
            _ => return false,
        }
        true
    }
}

fn write_lock(out: &mut String, lock: &DavLock) {
    let scope = if lock.shared { "shared" } else { "exclusive" };
    let depth = if lock.deep { "infinity" } else { "0" };
    let timeout = lock
        .timeout
        .map_or("Infinite".to_owned(), |d| format!("Second-{}", d.as_secs()));
    let _ = write!(
        out,
        "<D:activelock><D:lockscope><D:{scope}/></D:lockscope><D:locktype><D:write/></D:locktype>\
         <D:depth>{depth}</D:depth><D:timeout>{timeout}</D:timeout>\
         <D:locktoken><D:href>{}</D:href></D:locktoken>\
         <D:lockroot><D:href>{}</D:href></D:lockroot>",
        escape(&lock.token),
        escape(&lock.path.with_prefix().as_url_string()),
    );
    if let Some(owner) = &lock.owner {
        out.push_str(&element_xml(owner));
    }
    out.push_str("</D:activelock>");
}

/// An element as standalone XML (its namespaces declared on it).
fn element_xml(e: &Element) -> String {
    let mut buf = Vec::new();
    let config = EmitterConfig::new().write_document_declaration(false);
    if e.write_with_config(&mut buf, config).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Dead properties as ((namespace, name), XML), from the stored extended attributes.
fn dead_props(xattrs: &[(String, Vec<u8>)]) -> Vec<((&str, &str), String)> {
    crate::props::stored(xattrs)
        .into_iter()
        .map(|(ns, name, xml)| {
            let xml = String::from_utf8_lossy(xml);
            // The stored XML may start with a declaration, which can't appear mid-document.
            let body = match xml.strip_prefix("<?xml") {
                Some(rest) => rest.split_once("?>").map_or("", |(_, b)| b),
                None => &xml,
            };
            ((ns, name), body.trim().to_owned())
        })
        .collect()
}

fn empty_element(out: &mut String, ns: &str, name: &str) {
    if ns == DAV {
        let _ = write!(out, "<D:{name}/>");
    } else {
        let _ = write!(out, "<{name} xmlns=\"{}\"/>", escape(ns));
    }
}

fn mime_of(path: &str) -> &'static str {
    path.rsplit_once('.')
        .and_then(|(_, ext)| mime_guess::from_ext(ext).first_raw())
        .unwrap_or("application/octet-stream")
}

/// Escapes text for XML content and attributes.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out.into()
}

/// Percent-encodes a path for an href: everything but unreserved characters and `/`.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// (year, month, day, hour, minute, second, weekday 0 = Sunday) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        // Before the epoch: round down to the whole second.
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7) as u32;
    (
        year,
        month,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        weekday,
    )
}

/// RFC 1123 date, as in HTTP headers.
pub(crate) fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(t);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[wd as usize],
        MONTHS[(mo - 1) as usize]
    )
}

fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(rfc3339(t), "1994-11-06T08:49:37Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(b""), Some(Want::All(vec![])));
        assert_eq!(
            parse_body(br#"<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>"#),
            Some(Want::Names)
        );
        let Some(Want::Some(p)) = parse_body(
            br#"<propfind xmlns="DAV:"><prop><getetag/><x:color xmlns:x="urn:c"/></prop></propfind>"#,
        ) else {
            panic!("prop request not parsed");
        };
        assert_eq!(
            p[1],
            Prop {
                ns: "urn:c".into(),
                name: "color".into()
            }
        );
        assert_eq!(parse_body(b"<propfind><prop>"), None);
        assert_eq!(parse_body(br#"<x:propfind xmlns:x="urn:other"/>"#), None);
    }

    #[test]
    fn hrefs_are_encoded() {
        assert_eq!(encode_path("a b/é&<x>"), "a%20b/%C3%A9%26%3Cx%3E");
    }
}
