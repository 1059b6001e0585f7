"""The inline style sheet and script of the static HTML neuron page (no external resource).

The token cells carry their heat colour inline (:mod:`.html_parts`); this sheet only lays them out
like the web app's cells. The script filters the table of contents as one types; the page works
without it.
"""

from __future__ import annotations

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#111;
  background:#fafafa}
header{padding:12px 20px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 4px 0}
h2{font-size:18px;margin:0 0 4px 0}
h3{font-size:15px;margin:16px 0 4px 0}
.meta,.note{color:#666;font-size:12px;margin:2px 0 6px 0}
.layout{display:flex;align-items:flex-start}
nav#toc{position:sticky;top:0;max-height:100vh;overflow:auto;min-width:190px;padding:12px;
  border-right:1px solid #ddd;background:#fff;box-sizing:border-box}
nav#toc ol{padding-left:18px;margin:6px 0;font-size:13px}
nav#toc input{width:100%;box-sizing:border-box}
main{flex:1;min-width:0;padding:0 20px 40px 20px}
section.neuron{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 16px;
  margin:16px 0}
a.up{font-size:12px;font-weight:400;margin-left:8px}
dl.stats{display:flex;flex-wrap:wrap;gap:6px 18px;margin:8px 0}
dl.stats div{min-width:90px}
dl.stats dt{font-size:11px;color:#666}
dl.stats dd{margin:0;font-size:17px;font-weight:600}
.two{display:flex;flex-wrap:wrap;gap:16px}
.panel{flex:1 1 320px;min-width:0;overflow-x:auto}
svg.hist{max-width:100%;height:auto;background:#fff}
svg.hist .cap{font-size:12px;fill:#444}
svg.hist .tick{font-size:10px;fill:#666}
svg.hist .axis{stroke:#888;stroke-width:1}
svg.hist .zero{stroke:#888;stroke-width:1;stroke-dasharray:3 3}
.logit-cols{display:flex;gap:16px;flex-wrap:wrap}
table.logits{border-collapse:collapse;font-size:13px}
table.logits caption{text-align:left;font-size:12px;color:#666}
table.logits td{padding:1px 6px;border-bottom:1px solid #eee}
table.logits td.tok{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;
  word-break:break-all;max-width:260px}
table.logits.pos td.tok{background:#d4edda}
table.logits.neg td.tok{background:#f8d7da}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ex{margin:2px 0 6px 0}
.lbl{display:block;font-size:12px;color:#555;margin:0 0 2px 0}
.toks{display:flex;flex-wrap:wrap;gap:3px;align-items:flex-start}
label.lbl,label.toks{cursor:pointer}
.tg{display:none}
.t.o{display:none}
.tg:checked~.toks .t.o{display:inline-block}
.tg:checked~.toks .more{display:none}
.tg:checked~.toks{padding-left:6px;border-left:2px solid #ddd}
.t{display:inline-block;border:1px solid #ddd;border-radius:4px;padding:2px 4px;min-width:10px;
  font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;
  font-weight:700;white-space:pre;color:#111}
.t.mark{border:2px solid #111;padding:1px 3px}
.more{align-self:center;color:#888;padding:0 2px}
.iv{font-weight:600;margin:10px 0 4px 0;font-size:13px}
.probe{border-top:1px dashed #ccc;margin-top:14px;padding-top:6px}
.probe table{border-collapse:collapse;font-size:13px}
.probe td,.probe th{padding:1px 8px;border-bottom:1px solid #eee;text-align:left}
.sig{font-size:14px;margin:4px 0}
.chip{padding:1px 5px;border-radius:3px;margin:1px;font-size:12px;white-space:pre}
.chip.pos{background:#d4edda}
.chip.neg{background:#f8d7da}
"""

# Filter the table of contents by what is typed (no network, no eval, nothing logged).
SCRIPT = """
(function () {
  var box = document.getElementById("toc-filter");
  if (!box) { return; }
  box.addEventListener("input", function () {
    var q = box.value.toLowerCase();
    var items = document.querySelectorAll("#toc li");
    for (var i = 0; i < items.length; i++) {
      var hit = items[i].textContent.toLowerCase().indexOf(q) !== -1;
      items[i].style.display = hit ? "" : "none";
    }
  });
})();
"""
