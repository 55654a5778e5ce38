//! The page shell (head, inline CSS and script, navigation, the filter form) and the small
//! formatting helpers the pages share. Nothing is fetched from elsewhere: the style and the
//! script are inline, the charts are inline SVG.

use crate::filter::Filter;
use crate::route::Route;
use kommit_reconcilers::Millis;
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Light and dark (the reader's preference), one column on a phone, tables that scroll
/// sideways rather than squeeze.
const STYLE: &str = r#"
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#59636e;--line:#d0d7de;--card:#f6f8fa;
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--info:#0969da;--accent:#8250df}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#30363d;
--card:#161b22;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--info:#58a6ff;--accent:#a371f7}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center;padding:.6rem 1rem;border-bottom:1px solid var(--line)}
header .brand{font-weight:700;margin-right:.5rem}
nav ul{display:flex;flex-wrap:wrap;gap:.25rem;list-style:none;margin:0;padding:0}
nav a{display:block;padding:.25rem .6rem;border-radius:6px;color:var(--fg);text-decoration:none}
nav a[aria-current=page]{background:var(--card);font-weight:600;outline:1px solid var(--line)}
a{color:var(--info)}
a:focus-visible,button:focus-visible,input:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
#live-state{margin-left:auto;font-size:.85rem;color:var(--muted)}
main,form.filter{max-width:80rem;margin:0 auto;padding:0 1rem}
form.filter{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;padding-top:.8rem}
form.filter label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted)}
input{font:inherit;padding:.25rem .4rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
button{font:inherit;padding:.25rem .8rem;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg)}
h1{font-size:1.35rem;margin:1rem 0 .5rem}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.88em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.8rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.7rem .9rem}
.card dt{color:var(--muted);font-size:.8rem}.card dd{margin:0 0 .4rem}
.badge{display:inline-block;padding:0 .45rem;border-radius:999px;font-size:.8rem;font-weight:600;border:1px solid currentColor}
.healthy,.adopted,.Running,.ready{color:var(--ok)}
.progressing,.Pending{color:var(--warn)}
.degraded,.failed,.refused,.Failed,.notready{color:var(--bad)}
.superseded,.unknown,.Unknown,.Succeeded{color:var(--muted)}
.diag{color:var(--bad);margin:.2rem 0;padding-left:1.2rem}
ol.history{list-style:none;padding:0}ol.history>li{margin:.6rem 0}
.muted{color:var(--muted)}
.notice{border-left:3px solid var(--bad);padding:.4rem .8rem;background:var(--card)}
svg.chart{width:100%;height:auto;max-width:60rem;display:block}
svg.chart text{fill:var(--muted);font:11px system-ui,sans-serif}
svg.chart .ready{stroke:var(--ok)}svg.chart .updated{stroke:var(--info)}svg.chart .unavailable{stroke:var(--bad)}
svg.chart .grid{stroke:var(--line)}svg.chart .commit{stroke:var(--accent);stroke-dasharray:3 3}
.legend span{margin-right:1rem}
pre.log{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.5rem;overflow-x:auto;max-height:24rem}
.skip{position:absolute;left:-999rem}.skip:focus{left:1rem;top:.5rem;background:var(--bg);padding:.25rem .5rem}
@media (max-width:40rem){body{font-size:14px}th,td{padding:.25rem .35rem}header{padding:.5rem}}
"#;

/// Opens the page's event stream and swaps `<main>` with each fragment it sends, keeping
/// the reader's scroll position and focus (the filter form is outside `<main>`).
const SCRIPT: &str = r#"
(function(){
var main=document.getElementById('live'),state=document.getElementById('live-state');
if(!main||!window.EventSource)return;
var n=0,es=new EventSource('/events'+location.pathname+location.search);
es.addEventListener('main',function(e){
var x=window.scrollX,y=window.scrollY;main.innerHTML=e.data;window.scrollTo(x,y);
n++;document.body.setAttribute('data-updates',String(n));
if(state)state.textContent='live';});
es.onopen=function(){if(state)state.textContent='live';};
es.onerror=function(){if(state)state.textContent='reconnecting';};
})();
"#;

const NAV: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/history", "History"),
    ("/workloads", "Workloads"),
    ("/pods", "Pods"),
    ("/nodes", "Nodes"),
];

/// A whole page: head, navigation, the filter form of list pages, and `main`.
pub fn document(route: &Route, cluster_node: &str, title: &str, main: &Markup) -> String {
    let section = route.section();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · kommit" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                a.skip href="#live" { "Skip to content" }
                header {
                    span.brand { "kommit" }
                    nav aria-label="Sections" {
                        ul {
                            @for (href, label) in NAV {
                                li {
                                    @if href == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    span #live-state aria-live="polite" { "served by " (cluster_node) }
                }
                @if let Some(f) = route.filter() {
                    (filter_form(section, f))
                }
                main #live tabindex="-1" { (main) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

fn filter_form(action: &str, f: &Filter) -> Markup {
    html! {
        form.filter method="get" action=(action) role="search" {
            @if action != "/nodes" {
                label { "Namespace" input name="ns" value=(f.namespace.as_deref().unwrap_or("")) size="12"; }
            }
            label { "Labels" input name="label" value=(f.selector) placeholder="app=hello,tier" size="24"; }
            button type="submit" { "Filter" }
            @if !f.is_empty() { a href=(action) { "clear" } }
        }
    }
}

/// The Content-Security-Policy of every answer: nothing but this page's own inline style
/// and script (by hash), its event stream and its forms.
pub fn content_security_policy() -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let hash = |s: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s));
    format!(
        "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        hash(STYLE),
        hash(SCRIPT)
    )
}

/// The first 12 characters of a commit.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch; beyond jiff's range (years
/// -9999 to 9999), the number itself.
pub fn utc(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => format!("{secs} s since 1970"),
    }
}

/// UTC time of ms since the epoch.
pub fn utc_ms(ms: Millis) -> String {
    utc(i64::try_from(ms / 1000).unwrap_or(i64::MAX))
}

/// A duration in seconds as `4s`, `3m12s`, `2h05m`, `3d4h`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago `then_ms` was at `now_ms`.
pub fn age(now_ms: Millis, then_ms: Millis) -> String {
    span(i64::try_from(now_ms.saturating_sub(then_ms) / 1000).unwrap_or(i64::MAX))
}

/// A coloured word (the class is the word itself, from a closed set the pages pass).
pub fn badge(word: &str) -> Markup {
    html! { span class={"badge " (word)} { (word) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(span(5), "5s");
        assert_eq!(span(192), "3m12s");
        assert_eq!(span(7500), "2h05m");
        assert_eq!(span(90_000), "1d1h");
        assert_eq!(span(-3), "0s");
        assert_eq!(age(10_000, 4_000), "6s");
    }

    #[test]
    fn the_shell_escapes_and_marks_the_current_section() {
        let page = document(&Route::History, "<node>", "History", &html! { p { "x" } });
        assert!(page.contains("served by &lt;node&gt;"), "{page}");
        assert!(page.contains(r#"<a href="/history" aria-current="page">History</a>"#));
        assert!(page.contains(r#"<main id="live" tabindex="-1"><p>x</p></main>"#));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no remote asset"
        );
    }
}
