// The demo page: joins the session's room as a viewer with the LiveKit JS client, shows the
// avatar's video, plays its audio, and polls the session through the demo server.
"use strict";
const LK = window.LivekitClient;
const WORKER = "facecast-worker";
const $ = (id) => document.getElementById(id);
const state = {
  room: null, session: null, postedAt: null, firstFrameMs: null, frames: 0, poll: null,
  newTrack: false, // true once the current session's video track is attached
};
window.facecastDemo = state; // read by the browser test

function log(message) {
  $("log").textContent = `${new Date().toISOString().slice(11, 23)} ${message}\n` + $("log").textContent;
}

function seconds(from, to) {
  if (!from || !to) return "—";
  return ((Date.parse(to) - Date.parse(from)) / 1000).toFixed(2) + " s";
}

function countFrames(video) {
  const tick = () => {
    state.frames += 1;
    $("frames").textContent = String(state.frames);
    if (state.firstFrameMs === null && state.postedAt !== null && state.newTrack) {
      state.firstFrameMs = performance.now() - state.postedAt;
      $("t-first-frame").textContent = (state.firstFrameMs / 1000).toFixed(2) + " s";
      log(`first frame ${state.firstFrameMs.toFixed(0)} ms after POST /v1/sessions`);
    }
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}

// The text a person reads and the attribute the browser test waits on change together.
function showStatus(status) {
  $("status").textContent = status;
  document.body.dataset.status = status;
}

async function pollSession() {
  if (!state.session) return;
  const response = await fetch(`/demo/sessions/${state.session.id}`);
  if (!response.ok) return;
  const session = await response.json();
  // A reply for the session this page has just left must not overwrite the new one's status.
  if (!state.session || session.id !== state.session.id) return;
  showStatus(session.status);
  $("t-started").textContent = seconds(session.created_at, session.started_at);
  $("t-server-first-frame").textContent = seconds(session.created_at, session.first_frame_at);
}

async function join(session, livekitUrl) {
  if (state.room) await state.room.disconnect();
  state.newTrack = false;
  state.session = session;
  state.frames = 0;
  $("session-id").textContent = session.id;
  $("room").textContent = session.room_name;
  showStatus(session.status);
  const room = new LK.Room({ adaptiveStream: false, dynacast: false });
  state.room = room;
  room.on(LK.RoomEvent.TrackSubscribed, (track, _pub, participant) => {
    if (participant.identity !== WORKER) return;
    if (track.kind === "video") {
      track.attach($("video"));
      state.newTrack = true;
      log("avatar video subscribed");
    } else if (track.kind === "audio") {
      track.attach($("audio"));
      log("avatar audio subscribed");
    }
  });
  room.on(LK.RoomEvent.ActiveSpeakersChanged, (speakers) => {
    const speaking = speakers.some((p) => p.identity === WORKER);
    $("speaking").textContent = speaking ? "yes" : "no";
    document.body.dataset.speaking = speaking ? "yes" : "no";
  });
  await room.connect(livekitUrl, session.viewer_token, { autoSubscribe: true });
  log(`joined room ${session.room_name}`);
}

async function newSession(livekitUrl) {
  $("new-session").disabled = true;
  // Leave the previous room first, so its frames are not taken for the new session's.
  if (state.room) { await state.room.disconnect(); state.room = null; }
  $("video").srcObject = null;
  state.newTrack = false;
  state.firstFrameMs = null;
  $("t-first-frame").textContent = "—";
  state.postedAt = performance.now();
  try {
    const response = await fetch("/demo/sessions", { method: "POST" });
    const body = await response.json();
    if (!response.ok) { log(`POST /v1/sessions failed: ${JSON.stringify(body)}`); return; }
    $("t-post").textContent = ((performance.now() - state.postedAt) / 1000).toFixed(2) + " s";
    log(`created ${body.id} (${body.status})`);
    await join(body, livekitUrl);
  } finally {
    $("new-session").disabled = false;
  }
}

async function main() {
  const config = await (await fetch("/demo/config")).json();
  countFrames($("video"));
  $("new-session").onclick = () => newSession(config.livekit_url);
  $("unmute").onclick = () => { $("video").muted = false; $("audio").play(); };
  state.poll = setInterval(() => pollSession().catch((e) => log(String(e))), 500);
  if (config.session && config.session.id) await join(config.session, config.livekit_url);
  document.body.dataset.ready = "yes";
}

main().catch((error) => log(`error: ${error}`));
