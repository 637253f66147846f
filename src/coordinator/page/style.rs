//! The status page's inline CSS: readable on a laptop and a phone (cards that
//! wrap, tables that scroll sideways), light and dark, no web font, no file.
//!
//! Part of [`super`].

/// The stylesheet, inlined in `<style>`.
pub const CSS: &str = r#"
:root{--bg:#f6f7f9;--fg:#1c1f24;--muted:#5d6470;--card:#fff;--line:#d9dde3;
--green:#1a7f37;--amber:#b26b00;--red:#c62828;--blue:#2f6fb3}
@media (prefers-color-scheme:dark){:root{--bg:#14161a;--fg:#e6e8eb;--muted:#9aa3ad;
--card:#1d2026;--line:#343a43;--green:#3fb950;--amber:#d89a24;--red:#f05454;--blue:#5fa2e6}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:baseline;
padding:.8rem 1rem;border-bottom:1px solid var(--line);background:var(--card)}
header h1{font-size:1.25rem;margin:0}
main{padding:1rem;max-width:1400px;margin:0 auto}
h2{font-size:1.1rem;margin:1.4rem 0 .6rem}
.muted{color:var(--muted)}
.summary span{margin-right:.8rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,26rem),1fr));gap:1rem}
.shard{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--line);
border-radius:6px;padding:.7rem .9rem;min-width:0}
.shard.green{border-left-color:var(--green)}.shard.amber{border-left-color:var(--amber)}
.shard.red{border-left-color:var(--red)}
.shard h3{margin:0 0 .3rem;font-size:1.05rem;display:flex;justify-content:space-between;gap:.5rem}
.shard h3 .name{overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;
color:#fff;text-transform:uppercase;letter-spacing:.03em;white-space:nowrap}
.badge.green{background:var(--green)}.badge.amber{background:var(--amber)}.badge.red{background:var(--red)}
.reasons{margin:.2rem 0 .5rem;padding-left:1.1rem;color:var(--red)}
.shard.amber .reasons{color:var(--amber)}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .8rem;margin:.3rem 0}
.facts dt{color:var(--muted)}.facts dd{margin:0;overflow-wrap:anywhere}
.tablets{list-style:none;padding:0;margin:.4rem 0}
.tablets li{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap}
.dot{width:.7rem;height:.7rem;border-radius:50%;display:inline-block;flex:none}
.dot.green{background:var(--green)}.dot.amber{background:var(--amber)}.dot.red{background:var(--red)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line)}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--muted);font-weight:600}
.bar{width:8rem;height:.6rem;background:var(--line);border-radius:.3rem;overflow:hidden;display:inline-block}
.bar i{display:block;height:100%;background:var(--blue)}
svg.timeline{width:100%;height:auto;display:block;margin-top:.3rem}
svg.timeline .axis,svg.timeline .day{stroke:var(--line);stroke-width:1}
svg.timeline text{font-size:15px;fill:var(--muted)}
.m-full{fill:var(--blue)}.m-verified{fill:var(--green)}.m-failed{fill:var(--red)}
.m-incr{fill:var(--muted)}.m-bad{fill:none;stroke:var(--red);stroke-width:2}
.legend span{margin-right:.8rem;font-size:.85rem}
@media (max-width:600px){body{font-size:14px}main{padding:.6rem}header{padding:.6rem}}
"#;
