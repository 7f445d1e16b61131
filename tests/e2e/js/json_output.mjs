// Seed: "JSON outputs". Unchanged; the harness prints the answer and, as the seed's text says,
// the content is JSON when `finish_reason` is "stop" (a "length" answer may be cut off).
import ModelClient from "@azure-rest/ai-inference";
import { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";

const client = new ModelClient(
    process.env.AZURE_INFERENCE_ENDPOINT, 
    new AzureKeyCredential(process.env.AZURE_INFERENCE_CREDENTIAL)
);

var messages = [
    { role: "system", content: "You are a helpful assistant that always generate responses in JSON format, using."
        + " the following format: { \"answer\": \"response\" }." },
    { role: "user", content: "How many languages are in the world?" },
];

var response = await client.path("/chat/completions").post({
    body: {
        messages: messages,
        response_format: { type: "json_object" }
    }
});

// harness
if (isUnexpected(response)) {
    throw response.body.error;
}

const choice = response.body.choices[0];
console.log("finish_reason: " + choice.finish_reason);
console.log("content: " + choice.message.content);
if (choice.finish_reason === "stop") {
    console.log("parsed: " + JSON.stringify(JSON.parse(choice.message.content)));
}
