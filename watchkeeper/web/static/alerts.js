// Live alerts: each new alert is added at the top of the table, highlighted, with a short tone.
(function () {
  const body = document.querySelector("#alerts tbody");
  const state = document.getElementById("live-state");
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
  function cell(text, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (title) td.title = title;
    return td;
  }
  const source = new EventSource("/alerts/stream");
  source.onopen = () => { state.textContent = "Live: new alerts appear here as they happen."; };
  source.onerror = () => { state.textContent = "Live alerts interrupted; reconnecting…"; };
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (document.querySelector(`tr[data-alert="${alert.id}"]`)) return;
    const row = document.createElement("tr");
    row.dataset.alert = alert.id;
    row.className = "new-alert";
    row.append(
      cell(alert.occurred_at.slice(0, 19).replace("T", " ")),
      cell(alert.camera),
      cell(alert.subject_label),
      cell(String(alert.score), `threshold ${alert.threshold}`),
      cell(alert.status),
    );
    body.prepend(row);
    tone();
  });
})();
