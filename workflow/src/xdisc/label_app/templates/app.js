// The labelling page: keys and buttons save a label (POST /label) and move on; arrows browse.
// With Shift (or the station buttons) the label is the whole station's (image "*").
// KEYS (key -> label) and ITEM (station, image, prev, next) are set by the page before this script.
const form = document.getElementById("actions");
const stationForm = document.getElementById("station-actions");
const note = document.getElementById("note");
const status = document.getElementById("status");
let busy = false;
function setBusy(on) {
  busy = on;
  for (const b of document.querySelectorAll("form.actions button")) b.disabled = on;
}
async function save(label, image) {
  if (busy) return;
  setBusy(true);
  const what = image === "*" ? "station " + label : label;
  status.className = "";
  status.textContent = "saving " + what + " …";
  try {
    const r = await fetch("/label", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({station: ITEM.station, image: image, label: label, note: note.value})});
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
    status.textContent = "saved: " + what;
    window.location.assign(body.next);
  } catch (e) {
    status.className = "err";
    status.textContent = "NOT saved: " + e.message;
    setBusy(false);
  }
}
form.addEventListener("submit", ev => {
  ev.preventDefault();
  if (ev.submitter && ev.submitter.value) save(ev.submitter.value, ITEM.image);
});
stationForm.addEventListener("submit", ev => {
  ev.preventDefault();
  if (ev.submitter && ev.submitter.value) save(ev.submitter.value, "*");
});
document.addEventListener("keydown", ev => {
  if (ev.ctrlKey || ev.altKey || ev.metaKey) return;
  if (ev.target === note) {
    if (ev.key === "Escape" || ev.key === "Enter") { ev.preventDefault(); note.blur(); }
    return;
  }
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  if (key in KEYS) { ev.preventDefault(); save(KEYS[key], ev.shiftKey ? "*" : ITEM.image); }
  else if (key === "n") { ev.preventDefault(); note.focus(); }
  else if (key === "ArrowLeft" && ITEM.prev) window.location.assign(ITEM.prev);
  else if (key === "ArrowRight" && ITEM.next) window.location.assign(ITEM.next);
});
