// Entry point: a saved, unexpired session goes straight to the app, else the login.
import { showApp, showLogin } from "./ui.js";
import { storage } from "./storage.js";

const root = document.getElementById("app");
const session = storage.session();
const valid =
  session &&
  typeof session.token === "string" &&
  typeof session.username === "string" &&
  !(Date.parse(session.expires_at) <= Date.now());
if (valid) showApp(root, session);
else showLogin(root);
