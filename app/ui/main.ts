/**
 * Entry of the panel's browser code: the HTML shell names the page in
 * `<body data-page>`, this starts it.
 */
import { startAccount } from "./account.ts";
import { startAdmin } from "./admin.ts";
import { startSetup } from "./setup.ts";
import { startWebmail } from "./webmail.ts";

const page = document.body.dataset["page"];
const app = document.getElementById("app");
if (app) {
  if (page === "setup") startSetup(app);
  else if (page === "admin") startAdmin(app);
  else if (page === "account") startAccount(app);
  else if (page === "webmail") startWebmail(app);
}
