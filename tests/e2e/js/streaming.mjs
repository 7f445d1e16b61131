// Seed: "Stream content".
// Differences from the seed, each needed for the code to run:
// - `createSseStream` is imported (the seed uses it without showing the import);
// - the seed's top-level code is wrapped in `async function main()`, because it `return`s from a
//   top-level loop, which is a SyntaxError in a module (and in a script);
// - `stream: true` is added to the body: the seed's text says "set stream=True" but its code omits
//   it, and without it the service answers with one JSON body in which createSseStream finds no event.
import ModelClient from "@azure-rest/ai-inference";
import { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";
import { createSseStream } from "@azure/core-sse";

const client = new ModelClient(
    process.env.AZURE_INFERENCE_ENDPOINT, 
    new AzureKeyCredential(process.env.AZURE_INFERENCE_CREDENTIAL)
);

async function main() {
var messages = [
    { role: "system", content: "You are a helpful assistant" },
    { role: "user", content: "How many languages are in the world?" },
];

var response = await client.path("/chat/completions").post({
    body: {
        messages: messages,
        stream: true,
    }
}).asNodeStream();

var stream = response.body;
if (!stream) {
    throw new Error("The response stream is undefined");
}

if (response.status !== "200") {
    throw new Error(`Failed to get chat completions: ${response.body.error}`);
}

var sses = createSseStream(stream);

for await (const event of sses) {
    if (event.data === "[DONE]") {
        return;
    }
    for (const choice of (JSON.parse(event.data)).choices) {
        console.log(choice.delta?.content ?? "");
    }
}
}

await main();
