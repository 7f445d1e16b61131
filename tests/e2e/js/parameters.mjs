// Seed: "Explore more parameters".
// Differences from the seed:
// - its body is not valid JavaScript (`presence_penalty = "0.1",` and so on inside an object literal
//   is a SyntaxError), so every `=` is written `:`;
// - the seed quotes two numbers (`"0.1"`, `"0.8"`); the API types them as numbers (so does this
//   client's TypeScript) and aimi validates strictly, answering the strings with a 400
//   ("Invalid value for 'presence_penalty': Input should be a valid number."), so they are 0.1 and 0.8.
// The seed stops at the call; the harness then handles the response the way the seed's "Create a
// chat completion request" section does.
import ModelClient from "@azure-rest/ai-inference";
import { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";

const client = new ModelClient(
    process.env.AZURE_INFERENCE_ENDPOINT, 
    new AzureKeyCredential(process.env.AZURE_INFERENCE_CREDENTIAL)
);

var messages = [
    { role: "system", content: "You are a helpful assistant" },
    { role: "user", content: "How many languages are in the world?" },
];

var response = await client.path("/chat/completions").post({
    body: {
        messages: messages,
        presence_penalty: 0.1,
        frequency_penalty: 0.8,
        max_tokens: 2048,
        stop: ["<|endoftext|>"],
        temperature: 0,
        top_p: 1,
        response_format: { "type": "text" },
    }
});

// harness
if (isUnexpected(response)) {
    throw response.body.error;
}

console.log(response.body.choices[0].message.content);
console.log(response.body.model);
console.log(response.body.usage);
