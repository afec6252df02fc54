// Live alerts: each new alert of the viewer's sites is added at the top of the table,
// linking to its review card, with its band, a highlight and a short tone.
(function () {
  const table = document.getElementById("alerts");
  const body = table.querySelector("tbody");
  const state = document.getElementById("live-state");
  const shown = table.dataset.status;
  function tone() {
    try {
      const audio = new AudioContext();
      const beep = audio.createOscillator();
      beep.frequency.value = 880;
      beep.connect(audio.destination);
      beep.start();
      beep.stop(audio.currentTime + 0.25);
    } catch (error) { /* no sound before the page has been used: the highlight remains */ }
  }
  function cell(child) {
    const td = document.createElement("td");
    td.append(child);
    return td;
  }
  function link(alert) {
    const a = document.createElement("a");
    a.href = `/alerts/${encodeURIComponent(alert.id)}`;
    a.textContent = alert.occurred_at.slice(0, 19).replace("T", " ");
    return a;
  }
  function band(alert) {
    const span = document.createElement("span");
    span.className = `band band-${alert.band}`;
    span.title = `score ${alert.score}, threshold ${alert.threshold}`;
    span.textContent = alert.band;
    return span;
  }
  const source = new EventSource("/alerts/stream");
  source.onopen = () => { state.textContent = "Live: new alerts appear here as they happen."; };
  source.onerror = () => { state.textContent = "Live alerts interrupted; reconnecting…"; };
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (shown !== "all" && shown !== alert.status) return;
    if (document.querySelector(`tr[data-alert="${CSS.escape(alert.id)}"]`)) return;
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    const row = document.createElement("tr");
    row.dataset.alert = alert.id;
    row.className = "new-alert";
    row.append(
      cell(link(alert)),
      cell(alert.camera),
      cell(alert.subject_label),
      cell(band(alert)),
      cell(alert.status),
    );
    body.prepend(row);
    tone();
  });
})();
